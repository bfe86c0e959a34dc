"""Wall time of each paper's scenario on its defaults (`phasewise reproduce NAME`), run alone in this process, so a
scenario's figure is its own: SCENARIOS.md's "every scenario runs in seconds" measured here, not asserted in a timed
test (a loaded machine would fail one).

    python benchmarks/bench_reproduce.py [--repeat 3] [--only hat,spad] [--budget-s 30]

Prints each scenario's first run (cold: what `phasewise reproduce NAME` costs a user, the process's caches of
catalog entries and fitted constants empty for it) and its best over the repeats (warm), and exits 1 if a first run
exceeds the budget. Scenarios run in the listed order, so a later one may find an earlier one's caches filled.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import at_least, names, positive  # noqa: E402 - the scripts' shared flag checks


def main() -> None:
    from phasewise.scenarios import get_scenario, scenarios

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=at_least(1), default=3)
    ap.add_argument("--only", type=names(scenarios(), everything=None), default=list(scenarios()),
                    help=f"comma-separated scenario names (default: all): {', '.join(scenarios())}")
    ap.add_argument("--budget-s", type=positive, default=30.0,
                    help="the most seconds a scenario's first run may take")
    args = ap.parse_args()
    over = []
    for name in args.only:
        scenario = get_scenario(name)
        walls = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = scenario.run()
            walls.append(time.perf_counter() - t0)
        first, best = walls[0], min(walls)
        passed = sum(c.passed for c in result.outcome.checks)
        print(f"{name:12s} first {first:6.2f} s  best {best:6.2f} s  over {args.repeat} runs  "
              f"({passed}/{len(result.outcome.checks)} checks pass)", flush=True)
        if first > args.budget_s:
            over.append(name)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB" + (f"; over the {args.budget_s:g} s budget: {', '.join(over)}" if over else ""))
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
