"""What the benchmarks share: the labeling config and task texts, the stand-in model in a child
process, a Label Studio of their own, a pass-through timer for Label Studio calls, CPU accounting
from /proc, and the result table."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

IMPORT_CHUNK = 1000

LABEL_CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
    <Choice value="Neutral"/>
  </Choices>
</View>
"""
TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"

_THINGS = ("parcel", "blender", "headset", "jacket", "lamp", "kettle", "router", "backpack")
_VERDICTS = ("arrived early and works well", "broke after a week", "is fine, nothing special", "was not what the photo showed")


def task_text(part: str, n: int) -> str:
    """A short review, different for every (part, n), so that no call is ever answered from the cache."""
    return f"{part} review {n}: the {_THINGS[n % len(_THINGS)]} {_VERDICTS[n % len(_VERDICTS)]}."


def import_texts(ls, project_id: int, texts: list[str]) -> list[int]:
    """Import one task per text, IMPORT_CHUNK at a time; return the new task ids in order."""
    from core.labelstudio import NewTask

    ids: list[int] = []
    for start in range(0, len(texts), IMPORT_CHUNK):
        ids += ls.import_tasks(project_id, [NewTask({"text": t}) for t in texts[start : start + IMPORT_CHUNK]])
    return ids


# -- the pieces the benchmarks run against --------------------------------------------------------


@dataclass
class StandInProcess:
    """bench.standin_process in a child process (see there why); ``complete_after``: its batches'
    simulated completion delay in seconds (None: they move on each time they are looked at)."""

    latency: float
    complete_after: float | None = None
    process: subprocess.Popen | None = None
    base_url: str = ""

    def __enter__(self) -> "StandInProcess":
        repo = Path(__file__).resolve().parent.parent
        clock = [] if self.complete_after is None else ["--complete-after", str(self.complete_after)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.standin_process", str(self.latency), *clock],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"the stand-in did not start (printed {self.base_url!r})")
        return self

    def count(self) -> int:
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def batches(self) -> dict:
        """The Batch API's side: batches created, their lines, lines answered, their statuses."""
        self.process.stdin.write("batches\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def choose(self, n: int) -> None:
        """Make every later answer pick the n-th allowed value instead of the first (see there)."""
        self.process.stdin.write(f"choice {n}\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "ok":
            raise RuntimeError("the stand-in did not take the choice")

    def __exit__(self, *_exc) -> None:
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def label_studio(workdir: Path, environment: dict[str, str] | None = None, database: str = "SQLite") -> Iterator[tuple[str, str, str, int | None]]:
    """(url, token, where, process group): the one in LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY, else our
    own, started here (its process group is known then, to account for its CPU), with ``environment``
    added to its settings (its ``database``: SQLite unless they say otherwise)."""
    from core import settings
    from core.local_labelstudio import LocalLabelStudio, free_port

    url = (os.environ.get("LABEL_STUDIO_URL") or "").strip().rstrip("/")
    if url:
        yield url, os.environ.get("LABEL_STUDIO_API_KEY", ""), f"given by LABEL_STUDIO_URL ({url})", None
        return
    server = LocalLabelStudio(workdir / "labelstudio", free_port(), settings.load().local_labelstudio_venv, environment)
    started = time.perf_counter()
    print(f"Starting a Label Studio of the benchmark's own on {server.url} ...", file=sys.stderr, flush=True)
    server.start()
    print(f"  healthy after {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    try:
        yield server.url, server.credentials.token, f"started for the benchmark ({server.url}, on {database})", getattr(server._process, "pid", None)
    finally:
        server.stop()


@dataclass
class Scratch:
    """What a benchmark in a scratch folder runs against: Label Studio (``ls``, ``where``, its process
    group), the stand-in and the provider key pointing at it."""

    ls: Any
    where: str
    ls_group: int | None
    standin: StandInProcess
    key: Any


@contextlib.contextmanager
def scratch_setup(workdir: Path, latency: float, complete_after: float | None = None) -> Iterator[Scratch]:
    """A SQLite store in the scratch folder, a Label Studio (``label_studio``), the stand-in model in a
    child process and a provider key "bench" for it; Prompter's settings pointed at all three."""
    os.environ["PROMPTER_HOME"] = str(workdir / "home")
    os.environ.pop("PROMPTER_DATABASE_URL", None)
    from core import keys, store
    from core.labelstudio import LabelStudioClient

    store.forget_engines()
    with label_studio(workdir) as (url, token, where, ls_group), StandInProcess(latency, complete_after=complete_after) as standin:
        os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"] = url, token
        key = keys.add("bench", "openai-compatible", base_url=standin.base_url)
        yield Scratch(LabelStudioClient(url, token), where, ls_group, standin, key)


class TimedClient:
    """Wraps a LabelStudioClient and adds up the time spent in the calls the engine makes (wall time,
    and the CPU time of the thread making the call).

    Instrumentation only: it passes every call through unchanged.
    """

    MEASURED = ("tasks", "import_predictions", "delete_model_version", "model_versions", "predictions", "delete_prediction", "label_config")

    def __init__(self, client):
        self._client = client
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.spans: list[tuple[str, float, float, int]] = []  # (name, start, end in time.time(), items sent)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self.MEASURED or not callable(attribute):
            return attribute

        def timed(*args, **kwargs):
            started, began, cpu = time.perf_counter(), time.time(), time.thread_time()
            try:
                result = attribute(*args, **kwargs)
                if name == "tasks":
                    result = list(result)  # the export happens when the iterator is read
                return result
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
                self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.thread_time() - cpu
                self.calls[name] = self.calls.get(name, 0) + 1
                sent = len(args[1]) if name == "import_predictions" and len(args) > 1 and hasattr(args[1], "__len__") else 0
                self.spans.append((name, began, time.time(), sent))

        return timed


def cpu_seconds(groups: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds used so far by the whole machine ("machine", all CPUs) and by each named process
    group (a pid whose process group is summed), from /proc; empty where there is no /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    except (OSError, ValueError):
        return {}
    found = {"machine": (sum(fields) - fields[3] - fields[4]) / tick}  # all but idle and iowait
    wanted = {pgid: name for name, pgid in groups.items() if pgid}
    found.update({name: 0.0 for name in wanted.values()})
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid, pgrp = int(stat.parent.name), int(after_name[2])
        name = wanted.get(pid) or wanted.get(pgrp)
        if name:
            found[name] += (float(after_name[11]) + float(after_name[12])) / tick  # utime + stime
    return found


# -- report -----------------------------------------------------------------------------------


@dataclass
class Measured:
    label: str
    tasks: int  # tasks the wall time is for (after extrapolation)
    concurrency: int
    wall_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def per_task_ms(self) -> float:
        return self.wall_s / self.tasks * 1000


def table(rows: list[Measured], ideal_s: float) -> str:
    head = ("", "tasks", "concurrency", "wall s", "per task ms", "ratio to ideal")
    body = [
        (r.label, str(r.tasks), str(r.concurrency), f"{r.wall_s:.2f}", f"{r.per_task_ms:.2f}", f"{r.wall_s / ideal_s:.2f}")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    fmt = lambda line: "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line))  # noqa: E731
    out = [fmt(head), "  ".join("-" * w for w in widths)]
    for row, line in zip(rows, body):
        out.append(fmt(line))
        out.extend(f"    {note}" for note in row.notes)
    return "\n".join(out)


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def in_scratch_folder(measure: Callable[[Path], int]) -> int:
    """Run a measurement in a temporary folder (its PROMPTER_HOME, its Label Studio's data), removed after."""
    workdir = Path(tempfile.mkdtemp(prefix="prompter-bench-"))
    try:
        return measure(workdir)
    finally:
        from core import store

        store.forget_engines()
        shutil.rmtree(workdir, ignore_errors=True)


# -- this process's memory -------------------------------------------------------------------------


def status_mb(field_name: str) -> float | None:
    """VmRSS or VmHWM of this process in MB, from /proc; None where there is none."""
    with contextlib.suppress(OSError, ValueError, StopIteration, IndexError):
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field_name + ":"))
        return int(line.split()[1]) / 1024
    return None


def reset_peak_rss() -> bool:
    """Start the kernel's peak-RSS (VmHWM) count afresh, so the peak read after is the run's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- report helpers ---------------------------------------------------------------------------------


def grid(head: tuple[str, ...], rows: list[tuple[Any, ...]], notes: dict[int, list[str]] | None = None) -> str:
    cells = [tuple("" if v is None else v for v in row) for row in rows]
    widths = [max(len(str(line[i])) for line in [head, *cells]) for i in range(len(head))]
    fmt = lambda line: "  ".join(str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(line)).rstrip()  # noqa: E731
    out = [fmt(head), "  ".join("-" * w for w in widths)]
    for n, line in enumerate(cells):
        out.append(fmt(line))
        out.extend(f"    {note}" for note in (notes or {}).get(n, []))
    return "\n".join(out)


def number(value: float | None, digits: int = 2) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def other_suites() -> list[str]:
    """Test suites running on the machine now (they compete for the CPUs)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            words = cmdline.read_bytes().decode(errors="replace").split("\0")
            if any("pytest" in w for w in words[:3]) and int(cmdline.parent.name) != os.getpid():
                found.append(f"{cmdline.parent.name} ({' '.join(words)[:80].strip()})")
    return found


def say_other_suites(found: dict[str, list[str]]) -> None:
    """A line for each moment other test suites were found running: the figures are pessimistic then."""
    for moment, suites in found.items():
        if suites:
            print(f"  other test suites running {moment}: {', '.join(suites)}")
