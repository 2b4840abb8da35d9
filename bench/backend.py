"""Benchmark: the ML backend as an annotator and a project manager feel it, against the model alone.

    .venv/bin/python -m bench.backend [--latency 0.5] [--opens 10] [--retrieve 200] [--concurrency 8]

Sets up, in a scratch folder: a Label Studio of its own (or the one in LABEL_STUDIO_URL, which must be
allowed to call loopback), the stand-in model in a child process answering after ``--latency`` seconds,
a provider key, one project of ``--opens`` + ``--retrieve`` short reviews, one prompt version, and
Prompter's backend (``python -m core backend serve``) with the version published to the project at
``--concurrency``. Then:

- *pre-label*: ``--opens`` tasks opened one after the other as Label Studio's labeling screen opens
  them (``GET /api/tasks/{id}/``, which asks the backend when the task has no prediction), each timed
  until the answer holds the prediction; against the model's latency alone, measured in the same run
  by sending the same requests straight to the stand-in with the OpenAI client.
- *Retrieve Predictions*: the Data Manager action on ``--retrieve`` selected tasks, timed until Label
  Studio answers (it has saved every prediction by then); against the ideal, tasks x latency /
  concurrency, and Label Studio's predict timeout (``ML_TIMEOUT_PREDICT``, 100 s by default).

Every measured call is real (the stand-in's count is checked, no answer comes from the store). Prints
a table and one JSON line; exits 0 whether or not a figure is good.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import LABEL_CONFIG, TEMPLATE, StandInProcess, _aware, import_texts, in_scratch_folder, label_studio, percentile, task_text

MODEL = "gpt-4o-mini"
LABEL_STUDIO_TIMEOUT_S = 100.0  # ML_TIMEOUT_PREDICT's default in Label Studio 1.23


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backend", description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the stand-in takes to answer each call (default 0.5)")
    parser.add_argument("--opens", type=int, default=10, help="tasks opened one by one for the pre-label (default 10)")
    parser.add_argument("--retrieve", type=int, default=200, help="tasks selected for Retrieve Predictions (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="the publication's concurrency (default 8, the default of `backend connect`)")
    args = parser.parse_args(argv)
    if args.opens < 1 or args.retrieve < 1 or args.latency <= 0 or args.concurrency < 1:
        parser.error("--opens, --retrieve and --concurrency must be at least 1, --latency above 0")
    return in_scratch_folder(lambda workdir: _measure(args, workdir))


def _measure(args: argparse.Namespace, workdir: Path) -> int:
    os.environ["PROMPTER_HOME"] = str(workdir / "home")
    os.environ.pop("PROMPTER_DATABASE_URL", None)
    from core import calls, keys, labeling, local_labelstudio, messages, prompts, providers
    from core.backend import publications
    from core.labelstudio import LabelStudioClient

    with label_studio(workdir) as (url, token, where, _), StandInProcess(args.latency) as standin:
        os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"] = url, token
        ls = LabelStudioClient(url, token)
        project = ls.create_project("backend benchmark", LABEL_CONFIG)
        port = local_labelstudio.free_port()
        backend = subprocess.Popen(
            [sys.executable, "-m", "core", "backend", "serve", "--port", str(port)],
            cwd=Path(__file__).resolve().parent.parent, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(f"http://127.0.0.1:{port}/health")
            keys.add("bench", "openai-compatible", base_url=standin.base_url)
            ids = import_texts(ls, project.id, [task_text("opened", n) for n in range(args.opens)] + [task_text("retrieved", n) for n in range(args.retrieve)])
            opened_ids, retrieved_ids = ids[: args.opens], ids[args.opens :]
            version = prompts.create(project.id, "bench", template=TEMPLATE, controls=["sentiment"], provider_key="bench", model=MODEL)
            publications.connect(project.id, "bench", None, f"http://127.0.0.1:{port}", ls, concurrency=args.concurrency)

            opens = []
            for task_id in opened_ids:
                started = time.perf_counter()
                shown = ls._http("GET", f"api/tasks/{task_id}/").json()
                opens.append(time.perf_counter() - started)
                if len(shown.get("predictions") or []) != 1:
                    raise RuntimeError(f"task {task_id} opened without its pre-label: {shown.get('predictions')}")

            # the model alone: the same requests, straight to the stand-in, one after the other
            targets = labeling.read(LABEL_CONFIG)
            key = keys.get("bench")
            client = providers.client(key)
            alone = []
            for task in ls.tasks(project.id, ids=opened_ids):
                request = calls.request(version, key, messages.build(version, targets, task.data), labeling.schema(targets, version.controls))
                started = time.perf_counter()
                calls.ask(client, request)
                alone.append(time.perf_counter() - started)

            before = standin.count()
            started = time.perf_counter()
            answer = ls._http("POST", "api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project.id}, json={"selectedItems": {"all": False, "included": retrieved_ids}})
            retrieve_s = time.perf_counter() - started
            made = standin.count() - before
            from core import runs

            (served,) = runs.runs(project_id=project.id, kind="backend", limit=1)
            backend_s = served.elapsed_seconds  # from the request reaching the backend to its last answer stored
            first_item, last_item = _item_span(served.id)
            written = sum(1 for p in ls.predictions(project.id) if p.task_id in set(retrieved_ids))
        finally:
            backend.terminate()
            backend.wait(10)
            ls.delete_project(project.id)

    ideal = args.retrieve * args.latency / args.concurrency
    problems = [f"Retrieve Predictions answered HTTP {answer.status_code}"] if answer.status_code != 200 else []
    problems += [f"{made} model calls for {args.retrieve} tasks"] if made != args.retrieve else []
    problems += [f"{written} predictions written for {args.retrieve} tasks"] if written != args.retrieve else []
    opened_ms, alone_ms = statistics.median(opens) * 1000, statistics.median(alone) * 1000
    fits = int(LABEL_STUDIO_TIMEOUT_S / (retrieve_s / args.retrieve)) if retrieve_s else None
    print(f"Label Studio: {where}; stand-in latency {args.latency} s; publication concurrency {args.concurrency}", file=sys.stderr)
    print(f"{'':36} {'median ms':>10} {'p90 ms':>10}")
    print(f"{'task opened -> pre-label shown':36} {opened_ms:10.0f} {percentile(sorted(opens), 0.9) * 1000:10.0f}")
    print(f"{'the model alone':36} {alone_ms:10.0f} {percentile(sorted(alone), 0.9) * 1000:10.0f}")
    print(f"{'overhead (Label Studio + backend)':36} {opened_ms - alone_ms:10.0f}")
    print()
    print(f"Retrieve Predictions on {args.retrieve} tasks: {retrieve_s:.2f} s; ideal {ideal:.2f} s (tasks x latency / concurrency); ratio {retrieve_s / ideal:.2f}")
    print(f"  of which the backend's part (request received -> last answer stored): {backend_s:.2f} s; first answer stored after {first_item:.2f} s, last after {last_item:.2f} s")
    print(f"  and Label Studio's part (sending the tasks, saving the predictions): {retrieve_s - backend_s:.2f} s")
    print(f"At this pace, about {fits} tasks fit in Label Studio's {LABEL_STUDIO_TIMEOUT_S:.0f} s predict timeout.")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(json.dumps({
        "benchmark": "backend", "latency_s": args.latency, "concurrency": args.concurrency,
        "prelabel_median_ms": round(opened_ms, 1), "model_alone_median_ms": round(alone_ms, 1), "prelabel_overhead_ms": round(opened_ms - alone_ms, 1),
        "retrieve_tasks": args.retrieve, "retrieve_s": round(retrieve_s, 3), "retrieve_ideal_s": round(ideal, 3), "retrieve_ratio": round(retrieve_s / ideal, 3), "retrieve_backend_s": round(backend_s, 3),
        "tasks_in_timeout": fits, "problems": problems,
    }))
    return 0


def _item_span(run_id: int) -> tuple[float, float]:
    """Seconds from the run's start to its first and last item stored."""
    from core import runs

    run = runs.get(run_id)
    stamps = sorted(i.created_at for i in runs.items(run_id))
    start = _aware(run.started_at)
    return (_aware(stamps[0]) - start).total_seconds(), (_aware(stamps[-1]) - start).total_seconds()


def _wait_for(url: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"the backend did not start at {url}")


if __name__ == "__main__":
    raise SystemExit(main())
