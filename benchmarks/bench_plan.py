"""Wall time of a full `phasewise plan` (the default job: Llama-3.1-8B, 8 x H100 SXM, Azure conversation
lengths, TTFT <= 1 s and TPOT <= 50 ms for 90 % of requests), through the CLI as a user runs it.

    python benchmarks/bench_plan.py [--repeat 3] [--backend local|ray]
    python benchmarks/bench_plan.py --repeat 1 --model deepseek-ai/DeepSeek-R1 --hardware h200-sxm --gpus 16

Any other `phasewise plan` flag given here is passed through (a MoE plan over nodes, another engine, ...).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import at_least  # noqa: E402 - the scripts' shared flag checks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=at_least(1), default=3)
    ap.add_argument("--backend", default="local")
    args, plan_flags = ap.parse_known_args()
    cmd = [sys.executable, "-m", "phasewise.apps.cli", "plan", "--backend", args.backend, "--report",
           "/tmp/phasewise-bench-report.html", *plan_flags]
    walls = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if proc.returncode:
            sys.exit(proc.stderr)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    job = " ".join(plan_flags) or "default job"
    print(f"phasewise plan ({job}, report included, backend {args.backend}): "
          f"best {min(walls):.2f} s, median {sorted(walls)[len(walls) // 2]:.2f} s over {args.repeat} runs; "
          f"peak RSS of a process {rss:.0f} MiB")
    first = [line for line in proc.stdout.splitlines() if "strategies simulated" in line]
    print(first[0].strip() if first else "")


if __name__ == "__main__":
    main()
