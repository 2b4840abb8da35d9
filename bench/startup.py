"""How long a command takes to start: `python -m core` before it does anything, against the bare
interpreter measured in the same run. Every command, every run worker (`runs work`, `worker`) and
the ML backend pays it once per process.

    .venv/bin/python -m bench.startup             # 15 starts of each
    .venv/bin/python -m bench.startup --runs 5

Each command runs in an empty PROMPTER_HOME with no Label Studio configured, so it only starts,
reads the empty store and prints; the median of the starts is reported, with its user CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import grid, in_scratch_folder, number, other_suites, say_other_suites

COMMANDS = {
    "python (baseline)": ["-c", "pass"],
    "python -m core --help": ["-m", "core", "--help"],
    "python -m core keys list": ["-m", "core", "keys", "list"],
    "python -m core runs list": ["-m", "core", "runs", "list"],
}
# What a command loads that it may not need, to see which ones still come at start.
HEAVY = ("openai", "sqlmodel", "pandas", "label_studio_sdk.label_interface", "sklearn", "scipy", "altair", "procrastinate")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="starts of each command (15)")
    args = parser.parse_args()
    return in_scratch_folder(lambda workdir: measure(workdir, args.runs))


def measure(workdir: Path, runs: int) -> int:
    environment = {name: value for name, value in os.environ.items() if name not in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "PROMPTER_DATABASE_URL")}
    environment["PROMPTER_HOME"] = str(workdir / "home")
    found = {"before": other_suites()}
    rows, results = [], {}
    for name, argv in COMMANDS.items():
        walls, cpus = [], []
        for _ in range(runs):
            wall, cpu = _start(argv, environment)
            walls.append(wall)
            cpus.append(cpu)
        results[name] = {"wall_s": statistics.median(walls), "user_cpu_s": statistics.median(cpus)}
    found["after"] = other_suites()
    baseline = results["python (baseline)"]["wall_s"]
    for name, figures in results.items():
        figures["x_baseline"] = figures["wall_s"] / baseline
        rows.append((name, number(figures["wall_s"], 3), number(figures["user_cpu_s"], 3), number(figures["x_baseline"], 1)))
    print(f"Starting a command: the median of {runs} starts of each\n")
    print(grid(("command", "wall s", "user CPU s", "x python"), rows))
    loaded = _loaded(environment)
    print(f"\nloaded by `python -m core --help`: {', '.join(loaded) or 'none of ' + ', '.join(HEAVY)}")
    say_other_suites(found)
    print(json.dumps({"benchmark": "startup", "runs": runs, "results": results, "heavy_modules_loaded": loaded}))
    return 0


def _start(argv: list[str], environment: dict[str, str]) -> tuple[float, float]:
    """One start: its wall time and the user CPU it used (children's rusage, read before and after)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    started = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=environment, cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before


def _loaded(environment: dict[str, str]) -> list[str]:
    probe = f"import sys, runpy; sys.argv = ['core', '--help']\ntry:\n    runpy.run_module('core', run_name='__main__')\nexcept SystemExit:\n    pass\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    done = subprocess.run([sys.executable, "-c", probe], env=environment, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=True)
    return [m for m in done.stderr.strip().splitlines()[-1].split(",") if m]


if __name__ == "__main__":
    raise SystemExit(main())
