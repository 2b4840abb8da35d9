"""The test stand-in model in a process of its own, answering every call after a fixed delay.

A real provider is another machine; running the stand-in in the benchmark's own process would make
its HTTP handling compete with the engine for the GIL. Started by the benchmarks (``bench.common``):

    python -m bench.standin_process DELAY_SECONDS [--complete-after SECONDS]

prints its base URL on one line, then answers commands on stdin, one per line: ``count`` prints how
many chat calls it received; ``choice N`` makes every later answer pick the N-th value (from 0,
wrapping around) of every list of allowed values in the request's schema instead of the first, and
prints ``ok`` (``bench.replace`` uses it to change every answer between two runs); ``batches`` prints
one JSON line about its Batch API (``bench.batch``): how many batches were created, their lines, and
the lines answered. It stops at end of input.

``--complete-after SECONDS`` gives its batches a clock (``complete_after`` in
``tests/standin_batches.py``): each stays in progress until that long after it was created. Without
it a batch moves on one status each time it is looked at. The batches' lines are answered the same
way as live calls, without the delay.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from tests.standin import Reply, Request, StandIn, sample_from_schema

MODEL = "gpt-4o-mini"


def rotated(schema: Any, n: int) -> Any:
    """The schema with every ``enum`` list rotated by ``n``, so that its sample picks the n-th value."""
    if isinstance(schema, dict):
        out = {key: rotated(value, n) for key, value in schema.items()}
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            out["enum"] = enum[n % len(enum):] + enum[: n % len(enum)]
        return out
    if isinstance(schema, list):
        return [rotated(value, n) for value in schema]
    return schema


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.standin_process")
    parser.add_argument("delay", type=float, help="seconds before each live call is answered")
    parser.add_argument("--complete-after", type=float, default=None, help="seconds from a batch's creation before it may complete")
    args = parser.parse_args()
    delay = args.delay
    choice = 0

    def answer(request: Request) -> Reply:
        # A schema-valid sample (the first label, or the choice-th); only the delay and the choice are ours.
        if choice and request.schema is not None:
            return Reply.json(sample_from_schema(rotated(request.schema, choice)), delay=delay)
        return dataclasses.replace(StandIn.default_reply(request), delay=delay)

    with StandIn(models=(MODEL,)) as server:
        server.respond_with(answer)
        server.batches.complete_after = args.complete_after
        print(server.base_url, flush=True)
        for line in sys.stdin:
            command = line.split()
            if command == ["count"]:
                print(server.request_count, flush=True)
            elif len(command) == 2 and command[0] == "choice" and command[1].isdigit():
                choice = int(command[1])
                print("ok", flush=True)
            elif command == ["batches"]:
                with server.batches._lock:
                    made = list(server.batches.batches.values())
                    print(json.dumps({"batches": len(made), "lines": sum(len(b.lines) for b in made),
                                      "answered": server.batches.answered_lines,
                                      "statuses": sorted(b.status for b in made)}), flush=True)


if __name__ == "__main__":
    main()
