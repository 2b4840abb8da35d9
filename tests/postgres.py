"""A real PostgreSQL server for the store's tests: the machine's own binaries (Debian's postgresql
package; `make test` installs it when missing), a new cluster in a temporary folder, listening on
127.0.0.1 on a free port, started once per test process and removed at its end.

PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` user (which
Debian's package creates), in a folder it owns. Each test gets a database of its own, copied from a
template that the migrations built once: a copy takes milliseconds where migrating takes a second.

The server is tuned for tests, never for data anyone keeps: no fsync, and an odd time zone
(Pacific/Chatham, UTC+12:45 or +13:45), so that a timestamp that depended on the server's zone and
not on Prompter's own (UTC) would show.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from core import store
from core.local_labelstudio import free_port
from tests.helpers import wait_until

USER = "postgres"  # the cluster's superuser, and the system user the server runs as under root
PASSWORD = "never-shown-anywhere"  # in every URL the tests hand Prompter; trust auth ignores it
TEMPLATE = "prompter_template"
SERVER_ZONE = "Pacific/Chatham"


class PostgresUnavailable(RuntimeError):
    """The server cannot be started here; the message says why and what to install."""


def binaries() -> Path:
    """The folder with initdb and postgres: $PROMPTER_TEST_PG_BIN, else the newest of Debian's
    /usr/lib/postgresql/<version>/bin, else wherever initdb is on the PATH."""
    chosen = os.environ.get("PROMPTER_TEST_PG_BIN")
    if chosen:
        folder = Path(chosen)
    else:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
        on_path = shutil.which("initdb")
        folder = Path(found[-1]).parent if found else Path(on_path).parent if on_path else Path("/nonexistent")
    if not (folder / "initdb").exists() or not (folder / "postgres").exists():
        raise PostgresUnavailable(
            "PostgreSQL's server binaries (initdb, postgres) are not installed, and the store's tests run against a real "
            "PostgreSQL server: run the tests with `make test`, which installs it (Debian: apt-get install postgresql), "
            "or point PROMPTER_TEST_PG_BIN at the folder that holds them."
        )
    return folder


class PostgresServer:
    def __init__(self) -> None:
        self.bin = binaries()
        self.as_user: dict = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"PostgreSQL refuses to run as root and there is no '{USER}' user to run it as "
                    "(Debian's postgresql package creates it: apt-get install postgresql)."
                ) from None
            self.as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.root = Path(tempfile.mkdtemp(prefix="prompter-test-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.admin: psycopg.Connection | None = None
        self._names = itertools.count(1)

    # -- the server --------------------------------------------------------------------------------

    def start(self) -> "PostgresServer":
        if self.as_user:
            os.chown(self.root, self.as_user["user"], self.as_user["group"])
        initdb = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"],
            capture_output=True, text=True, cwd=self.root, **self.as_user,
        )
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}")
        for attempt in range(3):  # a free port can be taken by someone else before the server binds it
            self.port = free_port()
            if self._run_server():
                break
        else:
            raise PostgresUnavailable(f"The PostgreSQL server did not start; its log ({self.log}):\n{self._log_tail()}")
        self.admin = psycopg.connect(self._dsn("postgres"), autocommit=True)
        self.admin.execute(f"CREATE DATABASE {TEMPLATE}")
        store._open(self.url(TEMPLATE)).dispose()  # the numbered migrations, once, as Prompter runs them
        return self

    def _run_server(self) -> bool:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.root),
                    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", f"timezone={SERVER_ZONE}", "-c", "max_connections=200",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, **self.as_user,
            )
        try:
            wait_until(lambda: self.process.poll() is not None or self._accepts_connections(), timeout=60, what="the PostgreSQL server")
        except AssertionError:
            self.process.kill()
            self.process.wait()
            return False
        return self.process.poll() is None  # it exited instead (a port taken meanwhile): the caller tries another

    def _accepts_connections(self) -> bool:
        try:
            psycopg.connect(self._dsn("postgres"), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        if self.admin is not None:
            self.admin.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: a smart shutdown; every client is gone by now
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"

    # -- databases ----------------------------------------------------------------------------------

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database: a copy of the migrated template, or an empty one (``migrated=False``)."""
        name = f"test_{next(self._names)}"
        self.admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if migrated else 'template0'}")
        return name

    def drop_database(self, name: str) -> None:
        self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # FORCE: a killed worker's connections too
