"""Every flag of `estimate`, `simulate`, `plan`, `edge` and `device-cloud`, and every `reproduce NAME --set` key,
with odd values (negative, NaN, infinite, huge, empty, a line break, text where a number goes, a list where one
value goes), each in its own `phasewise` process: each run either works (exit 0, or 1 for a scenario check that
fails) or ends in one line `error: ...` with exit status 2 (or click's usage message for a value typer cannot
parse), never a traceback, a kill or a run past --timeout seconds. Prints each run that does not, then the count.

    python benchmarks/fuzz_flags.py                     # every command (~40 min on 2 cores)
    python benchmarks/fuzz_flags.py --commands simulate,estimate --timeout 60
    python benchmarks/fuzz_flags.py --commands simulate,estimate --model nemotron-3-nano   # another model's paths
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

PHASEWISE = str(Path(sys.executable).with_name("phasewise"))
VALUES = ["0", "-1", "1e400", "nan", "inf", "abc", "", "1.5", "99999999999", "\n", "1,2", "1e9", "[]"]
FLAGS = {
    "estimate": (["--batch", "--prompt-len", "--context-len", "--tp", "--pp", "--ep", "--moe-tp", "--attention-dp",
                  "--moe-imbalance", "--routing-skew", "--memory-fraction", "--precision", "--kv-dtype", "--engine",
                  "--weights-read-gbps", "--compile-cache"],
                 []),
    "simulate": (["--tp", "--pp", "--replicas", "--requests", "--rate", "--isl", "--osl", "--concurrency",
                  "--max-num-seqs", "--max-num-batched-tokens", "--slo-ttft-ms", "--slo-tpot-ms", "--seed",
                  "--isl-spread", "--cv", "--memory-fraction", "--ep", "--attention-dp", "--moe-imbalance",
                  "--routing-skew", "--spec-tokens", "--spec-acceptance", "--warmup", "--num-prompts", "--chunk-size",
                  "--prefill-workers", "--decode-workers", "--trace-limit", "--isl-dist", "--arrival", "--router",
                  "--prefix-caching", "--kv-link", "--client", "--gen-length", "--block-length", "--batch-cap",
                  "--swa-full-tokens-ratio", "--host-kv-cache-gb", "--kv-store-gb", "--autoscale-min",
                  "--autoscale-metric", "--autoscale-target", "--autoscale-startup-s", "--hicache-write-policy"],
                 ["--requests", "20", "--rate", "5"]),
    "plan": (["--gpus", "--slo-ttft-ms", "--slo-tpot-ms", "--slo-tbt-ms", "--attainment", "--isl", "--osl",
              "--isl-spread", "--objective", "--tp-options", "--pp-options", "--precisions", "--chunk-sizes",
              "--batch-caps", "--spec-tokens", "--spec-acceptance", "--routing-skew", "--router", "--top", "--workers",
              "--seed", "--rank", "--moe-layouts", "--policies", "--kv-link", "--arrivals", "--isl-dist",
              "--host-kv-cache-gb", "--kv-store-gb", "--chip-gpus", "--autoscale", "--autoscale-rate"],
             ["--gpus", "2", "--top", "1", "--workers", "1"]),
    "edge": (["--devices", "--mbps", "--latency-ms", "--split", "--precision", "--engine", "--prompt-len",
              "--output-len", "--subsequences", "--outline-points", "--outline-tokens", "--medusa-heads",
              "--acceptance", "--topology"],
             ["--output-len", "8"]),
    "device-cloud": (["--devices", "--device-hardware", "--cloud-hardware", "--cloud-gpus", "--uplink-mbps",
                      "--downlink-mbps", "--latency-ms", "--input-layers", "--output-layers", "--adapter-layers",
                      "--precision", "--engine", "--prompt-len", "--output-len", "--chunk", "--draft-tokens",
                      "--acceptance", "--setup"],
                     ["--output-len", "8", "--devices", "2"]),
}
SCENARIO_VALUES = ["-1", "nan", "abc", "1e9", "[]", "\n"]


def bad(result: subprocess.CompletedProcess) -> bool:
    err = result.stderr.strip()
    if "Traceback" in result.stderr or result.returncode not in (0, 1, 2):
        return True
    usage = "Usage:" in err or "╭" in err  # click's own message for a value typer cannot parse
    return result.returncode == 2 and "\n" in err and not usage


def run(args: list[str], timeout_s: float) -> tuple[bool, str]:
    # its own process group, killed whole on a timeout: a run's worker processes (plan, reproduce) do not outlive it
    with subprocess.Popen([PHASEWISE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            _, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return True, f"no answer in {timeout_s:g} s"
    result = subprocess.CompletedProcess(args, proc.returncode, "", stderr)
    return bad(result), f"exit {result.returncode}: " + stderr[-300:].replace("\n", " | ")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", default="estimate,simulate,plan,reproduce,edge,device-cloud",
                    help="comma-separated: estimate, simulate, plan, reproduce, edge, device-cloud")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds one run may take")
    ap.add_argument("--model", help="estimate / simulate / plan this model instead of each command's default")
    args = ap.parse_args()
    start, runs, failures = time.perf_counter(), 0, 0
    for command in [c.strip() for c in args.commands.split(",") if c.strip()]:
        cases: list[list[str]] = []
        if command == "reproduce":
            listing = subprocess.run([PHASEWISE, "reproduce", "--json"], capture_output=True, text=True).stdout
            for name in re.findall(r'"scenario": "([^"]+)"', listing):
                probe = subprocess.run([PHASEWISE, "reproduce", name, "--set", "zzz=1"], capture_output=True,
                                       text=True).stderr
                keys = re.search(r"known: ([^)]*)\)", probe)
                for key in (keys.group(1).split(", ") if keys else []):
                    cases += [["reproduce", name, "--set", f"{key}={value}", "--json"] for value in SCENARIO_VALUES]
        else:
            flags, base = FLAGS[command]
            model = ["--model", args.model] if args.model else []
            cases = [[command, *base, *model, flag, value] for flag in flags for value in VALUES]
        for case in cases:
            failed, what = run(case, args.timeout)
            runs += 1
            if failed:
                failures += 1
                shown = " ".join(a if a and a.isprintable() else repr(a) for a in case)
                print(f"FAIL {shown}: {what}", flush=True)
    print(f"{runs} runs, {failures} failing, in {time.perf_counter() - start:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
