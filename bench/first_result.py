"""Benchmark: how soon a click on "Start predicting" shows its first result, on the page and in Label
Studio, against the model's latency in the same run.

    .venv/bin/python -m bench.first_result [--tries 7] [--latency 0.5] [--tasks 200] [--concurrency 16]

Sets up, in a scratch folder: a Label Studio of its own (or the one in LABEL_STUDIO_URL), the stand-in
model in a child process answering after ``--latency`` seconds, a provider key, one project of
``--tasks`` short reviews, and the dashboard (``streamlit run app.py``) opened in headless Chromium.

Each try saves a new prompt (its template differs, so no answer comes from the cache), opens the
Predict page as a user would, ticks "Predict with v1 all the same", and clicks "Start predicting".
From the click it times:

- *click to first result*: until the page shows a non-zero count of finished tasks;
- *click to first prediction in Label Studio*: until the first prediction of the version was created
  there (its ``created_at``, read after the run, so that no polling loads Label Studio meanwhile);
- where the time went, from the store's timestamps: the run created, the worker on it, the first
  answer stored.

Targets (issue #16, point 8): the first result within one model latency + 1 s of the click, the
first prediction in Label Studio within 3 s at a latency of 0.5 s. The model latency is measured in
the same run, from the items' own latencies. Prints a table and one JSON line; exits 0 whether or not
the targets are met.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import LABEL_CONFIG, TEMPLATE, StandInProcess, _aware, import_texts, in_scratch_folder, label_studio, other_suites, task_text

RESULT_SLACK_S = 1.0  # the first result may take one model latency plus this
FIRST_PREDICTION_S = 3.0  # at a model latency of 0.5 s
MODEL = "gpt-4o-mini"
_MAIN_TEXT = "document.querySelector('[data-testid=stMain]').innerText"
_FIRST_RESULT = r"/([1-9]\d*) done, \d+ failed|\d+ done, [1-9]\d* failed|Run \d+ finished/"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_result", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=7, help="clicks measured (default 7)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the stand-in takes to answer each call (default 0.5)")
    parser.add_argument("--tasks", type=int, default=200, help="tasks in the project, all predicted by each try (default 200)")
    parser.add_argument("--concurrency", type=int, default=16, help="the runs' concurrency (default 16, the page's default)")
    args = parser.parse_args(argv)
    if args.tries < 1 or args.tasks < 1 or args.latency <= 0 or args.concurrency < 1:
        parser.error("--tries, --tasks and --concurrency must be at least 1, --latency above 0")
    return in_scratch_folder(lambda workdir: _measure(args, workdir))


def _measure(args: argparse.Namespace, workdir: Path) -> int:
    os.environ["PROMPTER_HOME"] = str(workdir / "home")
    os.environ.pop("PROMPTER_DATABASE_URL", None)

    from label_studio_sdk import LabelStudio
    from playwright.sync_api import sync_playwright

    from core import keys, store
    from core.labelstudio import LabelStudioClient
    from tests.browser import Dashboard, chromium

    suites_at_start = other_suites()
    store.forget_engines()
    with label_studio(workdir) as (url, token, where, _group), StandInProcess(args.latency) as standin:
        os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"] = url, token
        ls = LabelStudioClient(url, token)
        sdk = LabelStudio(base_url=url, api_key=token)
        keys.add("bench", "openai-compatible", base_url=standin.base_url)
        project_id = ls.create_project(f"bench first result {int(time.time())}", LABEL_CONFIG).id
        try:
            import_texts(ls, project_id, [task_text("first", n) for n in range(args.tasks)])
            with Dashboard(workdir / "dashboard.log") as dashboard, sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
                page = browser.new_page(viewport={"width": 1400, "height": 2400})
                page.set_default_timeout(60_000)
                tries = []
                for n in range(1, args.tries + 1):
                    print(f"Try {n} of {args.tries} ...", file=sys.stderr, flush=True)
                    tries.append(_one_try(n, page, dashboard.url, sdk, project_id, args))
                browser.close()
        finally:
            ls.delete_project(project_id)
    suites_during = other_suites()
    _report(args, where, tries, suites_at_start, suites_during)
    return 0


def _one_try(n: int, page, base_url: str, sdk, project_id: int, args) -> dict[str, Any]:
    from core import prompts, recent, runs, settings
    from tests.browser import open_page, settle

    name = f"first-result-{n}"
    version = prompts.create(
        project_id, name, template=f"{TEMPLATE}\n(try {n})", controls=["sentiment"], provider_key="bench", model=MODEL, temperature=0.0
    )
    recent.remember(project_id=project_id, prompt=name)  # the page opens on it, as after writing it
    open_page(page, base_url, "Predict")
    page.get_by_role("spinbutton", name="Concurrency").fill(str(args.concurrency))
    page.get_by_role("spinbutton", name="Concurrency").press("Tab")
    settle(page)
    page.get_by_text(f"Predict with v{version.number} all the same").click()
    settle(page)

    clicked_at = time.time()
    clicked = time.perf_counter()
    page.get_by_role("button", name="Start predicting", exact=True).click()
    # polled inside the browser (every 25 ms), where it costs least
    page.wait_for_function(f"() => {_MAIN_TEXT}.includes('Started run')", polling=25, timeout=120_000)
    started_s = time.perf_counter() - clicked
    page.wait_for_function(f"() => {_FIRST_RESULT}.test({_MAIN_TEXT})", polling=25, timeout=120_000)
    first_result_s = time.perf_counter() - clicked
    (run,) = runs.runs(prompt=name)
    while runs.live(runs.get(run.id)):
        time.sleep(0.2)
    first_prediction = min((_aware(p.created_at).timestamp() for p in sdk.predictions.list(project=project_id) if p.model_version == version.model_version), default=None)
    run = runs.get(run.id)
    items = runs.items(run.id)
    stored = sorted(_aware(item.created_at).timestamp() for item in items)
    latencies = [item.latency_ms / 1000 for item in items if item.latency_ms is not None]
    log = settings.load().home / "logs" / f"run-{run.id}.log"
    forked = log.exists() and "forked by the fork server" in log.read_text()
    return {
        "try": n,
        "run_id": run.id,
        "status": run.status,
        "worker": "forked" if forked else "fresh process",
        "done": run.done,
        "failed": run.failed,
        "started_s": started_s,
        "first_result_s": first_result_s,
        "first_prediction_s": None if first_prediction is None else first_prediction - clicked_at,
        "created_s": _aware(run.created_at).timestamp() - clicked_at,
        "claimed_s": _aware(run.started_at).timestamp() - clicked_at if run.started_at else None,
        "first_stored_s": stored[0] - clicked_at if stored else None,
        "latency_s": statistics.median(latencies) if latencies else None,
    }


def _report(args, where: str, tries: list[dict[str, Any]], suites_at_start: list[str], suites_during: list[str]) -> None:
    def median(key: str) -> float | None:
        values = [t[key] for t in tries if t[key] is not None]
        return statistics.median(values) if values else None

    def worst(key: str) -> float | None:
        values = [t[key] for t in tries if t[key] is not None]
        return max(values) if values else None

    latency = median("latency_s")
    result_limit = latency + RESULT_SLACK_S if latency is not None else None
    problems = [f"try {t['try']}: run {t['run_id']} {t['status']}, {t['done']} done, {t['failed']} failed" for t in tries if t["status"] != "completed" or t["failed"]]
    problems += [f"try {t['try']}: no result seen on the page" for t in tries if t["first_result_s"] is None]
    problems += [f"try {t['try']}: no prediction seen in Label Studio" for t in tries if t["first_prediction_s"] is None]

    fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    head = ("try", "worker", "Started run s", "created s", "worker on it s", "first answer stored s", "first result s", "first prediction in LS s", "latency s")
    rows = [
        (str(t["try"]), t["worker"], fmt(t["started_s"]), fmt(t["created_s"]), fmt(t["claimed_s"]), fmt(t["first_stored_s"]), fmt(t["first_result_s"]), fmt(t["first_prediction_s"]), fmt(t["latency_s"]))
        for t in tries
    ]
    rows.append(("median", "", *(fmt(median(k)) for k in ("started_s", "created_s", "claimed_s", "first_stored_s", "first_result_s", "first_prediction_s", "latency_s"))))
    rows.append(("worst", "", *(fmt(worst(k)) for k in ("started_s", "created_s", "claimed_s", "first_stored_s", "first_result_s", "first_prediction_s", "latency_s"))))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"\nClick to first result: {args.tries} clicks on Start predicting, {args.tasks} tasks, concurrency {args.concurrency}, model latency {args.latency} s; Label Studio {where}")
    print("Every figure is seconds after the click.")
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    result_met = result_limit is not None and worst("first_result_s") is not None and worst("first_result_s") <= result_limit
    prediction_met = worst("first_prediction_s") is not None and worst("first_prediction_s") <= FIRST_PREDICTION_S
    print(f"\nTarget: first result within model latency + {RESULT_SLACK_S:.0f} s = {fmt(result_limit)} s on every try: "
          f"worst {fmt(worst('first_result_s'))} s -> {'met' if result_met else 'NOT met'}")
    print(f"Target: first prediction in Label Studio within {FIRST_PREDICTION_S:.0f} s (at latency 0.5 s): "
          f"worst {fmt(worst('first_prediction_s'))} s -> {'met' if prediction_met else 'NOT met'}"
          + ("" if abs(args.latency - 0.5) < 1e-9 else f" (this run's latency is {args.latency} s)"))
    if suites_at_start or suites_during:
        print(f"Note: test suites were running on the machine meanwhile ({', '.join(sorted(set(suites_at_start + suites_during)))}); the figures are pessimistic.")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(json.dumps({
        "benchmark": "first_result",
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tries": tries,
        "latency_s": latency,
        "first_result_limit_s": result_limit,
        "first_result_worst_s": worst("first_result_s"),
        "first_result_median_s": median("first_result_s"),
        "first_prediction_worst_s": worst("first_prediction_s"),
        "first_prediction_median_s": median("first_prediction_s"),
        "first_result_met": result_met and not problems,
        "first_prediction_met": prediction_met and not problems,
        "problems": problems,
    }))


if __name__ == "__main__":
    sys.exit(main())
