"""Files and folders only their owner can read.

What Prompter keeps in ``PROMPTER_HOME`` is private: the database (saved keys, encrypted, and what the
team's prompts and runs saw), the encryption key, the local Label Studio's credentials and data, and
the run logs. Every folder made there is created with mode 0700 and every file with mode 0600, whatever
the umask. One found looser (left by an older version, or copied in) is tightened when Prompter opens
it: group and other lose every permission, and the owner's are left as they are.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from core import settings

FOLDER_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077  # the group's and everyone else's permissions


def folder(path: Path, *, tighten_existing: bool = True) -> Path:
    """The folder, made 0700 if it is missing (missing parents are made as usual), else tightened
    unless ``tighten_existing`` is False (a folder the user named that may not be Prompter's alone)."""
    path = Path(path)
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        if tighten_existing:
            tighten(path)
    else:
        os.chmod(path, FOLDER_MODE)  # whatever the umask took away, or left
    return path


def in_home(*parts: str) -> Path:
    """``PROMPTER_HOME``, or a folder inside it, each made or tightened as ``folder`` does."""
    path = folder(settings.load().home)
    for part in parts:
        path = folder(path / part)
    return path


def open_file(path: Path, flags: int) -> int:
    """A file descriptor for the file, which is created 0600 or, if it exists, tightened first.
    ``flags`` are os.open's (O_WRONLY | O_APPEND, ...); O_CREAT is added."""
    try:
        descriptor = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        descriptor = os.open(path, flags & ~os.O_EXCL)
        _tighten_open(descriptor)
    else:
        os.fchmod(descriptor, FILE_MODE)
    return descriptor


def append(path: Path):
    """The file opened for appending bytes (a log), as ``open_file`` makes it."""
    return os.fdopen(open_file(path, os.O_WRONLY | os.O_APPEND), "ab")


def file(path: Path) -> Path:
    """The file made (empty) 0600 if it is missing, else tightened; its content is not touched."""
    os.close(open_file(path, os.O_RDONLY))
    return Path(path)


def tighten(path: Path) -> None:
    """Take every permission of group and others off the file or folder, if it exists."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if mode & _OTHERS:
        os.chmod(path, mode & ~_OTHERS)


def _tighten_open(descriptor: int) -> None:
    mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
    if mode & _OTHERS:
        os.fchmod(descriptor, mode & ~_OTHERS)
