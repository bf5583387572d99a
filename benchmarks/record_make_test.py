"""`make test` records its own duration when it passes, for `make bench`'s page.

    python benchmarks/record_make_test.py START_EPOCH_SECONDS [OUT]

The Makefile reads the clock when make starts (before the environment is
created, if it is missing) and calls this as the last step of ``make test``,
which runs only when every step passed. It writes ``_build/make-test.json``:
the seconds, when it started and finished, the commit, the machine and its
load. ``make bench`` cannot run ``make test`` itself (it takes longer than the
benchmark's whole budget); it reports this record, dated, and says where it
came from.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_common import ROOT, cores, cpu_model, git_commit, load  # noqa: E402

OUT = ROOT / "_build" / "make-test.json"


def record(start: float, out: pathlib.Path = OUT, end: float | None = None) -> dict:
    end = time.time() if end is None else end

    def iso(t: float) -> str:
        return datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")

    data = {"command": "make test", "seconds": round(end - start, 1), "started": iso(start),
            "finished": iso(end), "commit": git_commit(), "cpu": cpu_model(), "cores": cores(),
            "load_at_end": load()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    return data


def main(argv: list[str]) -> int:
    try:
        start = float(argv[0])
    except (IndexError, ValueError):
        print("record_make_test: expected the start time in seconds since the epoch", file=sys.stderr)
        return 0  # never fail make test over its own stopwatch
    out = pathlib.Path(argv[1]) if len(argv) > 1 else OUT
    data = record(start, out)
    print(f"make test took {data['seconds']:.0f} s (recorded in {out} for make bench)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
