"""The test stand-in model in a process of its own, answering every call after a fixed delay.

A real provider is another machine; running the stand-in in the benchmark's own process would make
its HTTP handling compete with the engine for the GIL. Started by the benchmarks (``bench.common``):

    python -m bench.standin_process DELAY_SECONDS

prints its base URL on one line, then answers commands on stdin, one per line: ``count`` prints how
many chat calls it received. It stops at end of input.
"""

from __future__ import annotations

import dataclasses
import sys

from tests.standin import Reply, Request, StandIn

MODEL = "gpt-4o-mini"


def main() -> None:
    delay = float(sys.argv[1])

    def answer(request: Request) -> Reply:
        # The built-in answer is a schema-valid sample (the first label); only the delay is ours.
        return dataclasses.replace(StandIn.default_reply(request), delay=delay)

    with StandIn(models=(MODEL,)) as server:
        server.respond_with(answer)
        print(server.base_url, flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                print(server.request_count, flush=True)


if __name__ == "__main__":
    main()
