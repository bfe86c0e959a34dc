"""The files a user writes, parsed but saying odd things: valid seeds of each kind (a deployment a feature: engine
knobs, disaggregation, MoE layouts, the HPA's behavior, Knative's KPA, KEDA, Dynamo's SLA planner, speculative
decoding, priority pools, attention offload, online training, host and shared KV tiers with a cache-aware router,
vision encoders, a compute-in-memory chip's operator mapping; a sweep grid, an edge topology with its split, a
device-cloud setup, an operator mapping, an engine profile, fit-engine's measured points; a chip, one from parts,
and two models' config.json through a simulation), each with one or two of
its fields (nested ones included) set to an odd value (none, zero, negative, a fraction, text, a boolean, a list, an
object, 10^12, NaN, infinity) or removed, written as the user's file and run through the command that reads it
(`simulate --deployment`, `sweep`, `edge --topology`, `device-cloud --setup`, `estimate --mapping`, `simulate
--engine`, `fit-engine`) in this process. Each either runs (exit 0) or ends in one line `error: ...` with exit
status 2, never a traceback, another exit status, a multi-line message or more than --seconds of work.
tests/test_fuzz_inputs.py breaks the files' bytes and syntax at their readers; this breaks their meaning, after
the schema, through the commands. Prints each case that does not, with the fields it changed, then the count.

    python benchmarks/fuzz_files.py                          # 40 cases a seed, seed 0
    python benchmarks/fuzz_files.py --cases 200 --seed 3 --only kpa,sla,topology
    python benchmarks/fuzz_files.py --twin       # each deployment also through the twin (serve's LiveSim)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import random
import signal
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from phasewise.apps import cli
from phasewise.specs.catalog import packaged

POINTS = yaml.safe_load(resources.files("phasewise.scenarios").joinpath("data", "splitwise_vllm.yaml").read_text())[
    "points"]
HPA = {"metric": "running", "target": 8, "min_replicas": 1, "sync_period_s": 15, "tolerance": 0.1,
       "scale_down_window_s": 60, "scale_up_policies": [{"type": "pods", "value": 2, "period_s": 30}],
       "scale_down_select": "min", "startup_s": 20}
SEEDS: dict[str, dict[str, Any]] = {
    "knobs": {"model": "meta-llama/Llama-3.1-8B", "router": "least_outstanding", "instances": [
        {"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 2, "engine": "vllm", "precision": "fp8",
         "kv_dtype": "fp8", "max_num_seqs": 64, "max_num_batched_tokens": 2048, "memory_fraction": 0.8,
         "prefix_caching": True, "host_kv_cache_bytes": 6.4e10}]},
    "disagg": {"model": "meta-llama/Llama-3.1-8B", "kv_link": "rdma", "router": "round_robin", "instances": [
        {"role": "prefill", "hardware": "h100-sxm", "tp": 2, "replicas": 1, "engine": "sglang",
         "chunked_prefill_size": 4096},
        {"role": "decode", "hardware": "h200-sxm", "tp": 1, "replicas": 2, "engine": "sglang",
         "max_running_requests": 128}]},
    "moe": {"model": "Qwen/Qwen3-30B-A3B", "instances": [
        {"role": "collocated", "hardware": "h100-sxm", "tp": 4, "ep": 4, "attention_dp": 2, "replicas": 1,
         "engine": "vllm", "moe_imbalance": 1.3}]},
    "hpa": {"model": "meta-llama/Llama-3.1-8B", "instances": [
        {"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 4, "autoscale": HPA}]},
    "kpa": {"model": "meta-llama/Llama-3.1-8B", "instances": [
        {"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 4,
         "autoscale": {"autoscaler": "kpa", "metric": "concurrency", "target": 16, "min_replicas": 0,
                       "scale_down_delay_s": 30, "activation_scale": 2, "startup_s": 10}}]},
    "keda": {"model": "meta-llama/Llama-3.1-8B", "instances": [
        {"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 3,
         "autoscale": {"autoscaler": "keda", "metric": "running", "target": 8, "min_replicas": 0,
                       "startup_s": 10}}]},
    "sla": {"model": "meta-llama/Llama-3.1-8B", "kv_link": "nvlink", "instances": [
        {"role": "prefill", "hardware": "h100-sxm", "tp": 1, "replicas": 2,
         "autoscale": {"metric": "sla", "ttft_s": 1, "itl_s": 0.05, "predictor": "kalman", "max_gpu_budget": 4}},
        {"role": "decode", "hardware": "h100-sxm", "tp": 1, "replicas": 2,
         "autoscale": {"metric": "sla", "ttft_s": 1, "itl_s": 0.05, "predictor": "kalman", "max_gpu_budget": 4}}]},
    "speculative": {"model": "XiaomiMiMo/MiMo-7B-Base", "speculative": {"draft_tokens": 3, "acceptance": 0.6},
                    "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 1,
                                   "engine": "trtllm"}]},
    "pools": {"model": "meta-llama/Llama-3.1-8B", "priority_pools": {"slack_margin_ms": 200, "migration": "auto"},
              "instances": [{"role": "collocated", "pool": "lp", "hardware": "h100-sxm", "tp": 1, "replicas": 2},
                            {"role": "collocated", "pool": "hp", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]},
    "offload": {"model": "meta-llama/Llama-3.1-8B", "attention_offload": {"mode": "fixed", "requests": 16,
                                                                          "sm_share": 0.2},
                "instances": [{"role": "prefill", "hardware": "h100-sxm", "tp": 1, "replicas": 1},
                              {"role": "decode", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]},
    "training": {"model": "meta-llama/Llama-3.1-8B", "online_training": {"method": "lora", "reuse": "offload",
                                                                         "feedback_share": 0.2},
                 "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]},
    "prefix": {"model": "meta-llama/Llama-3.1-8B", "router": "kv_aware", "kv_store_bytes": 1e12, "instances": [
        {"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 2, "engine": "sglang",
         "prefix_caching": True, "host_kv_cache_bytes": 2e11, "hicache_write_policy": "write_back"}]},
    "dynamo-router": {"model": "meta-llama/Llama-3.1-8B", "router": "dynamo_kv", "kv_overlap_score_weight": 2.0,
                      "router_temperature": 0.2, "router_queue_threshold": 2.0, "router_kv_events": False,
                      "router_ttl_s": 60.0,
                      "instances": [{"role": "prefill", "hardware": "h100-sxm", "tp": 1, "replicas": 2},
                                    {"role": "decode", "hardware": "h100-sxm", "tp": 1, "replicas": 2}]},
    "encoders": {"model": "Qwen/Qwen3-VL-30B-A3B-Instruct", "encoders": {
        "hardware": "h100-sxm", "tp": 1, "replicas": 1, "link": "pcie", "max_batch_tokens": 4096},
        "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 2, "replicas": 1}]},
    "cim-chip": {"model": "meta-llama/Llama-2-7b-hf", "instances": [
        {"role": "collocated", "hardware": "halo-2.5d", "tp": 1, "replicas": 1, "mapping": "halo"}]},
}
# each deployment seed's traffic beyond RUN's: prefix-sharing requests for the prefix caches, images for the encoders
TRAFFIC = {"prefix": ["--trace", "mooncake"], "dynamo-router": ["--trace", "mooncake"],
           "encoders": ["--trace", "azure-conv", "--images-per-request", "1", "--image-size", "1280x720"]}
RUN = ["--trace-limit", "40", "--rate", "4", "--slo-ttft-ms", "2000", "--slo-tpot-ms", "100"]
# the deployments the twin serves (it refuses autoscaling, attention offload and online training, each in one line)
TWIN_SEEDS = ("knobs", "disagg", "moe", "speculative", "pools", "prefix", "encoders", "cim-chip")
# the other kinds of file: (seed, the command that reads it; {path} and {out} filled in)
OTHER_FILES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "sweep": ({"models": ["meta-llama/Llama-3.1-8B"], "hardware": ["h100-sxm"], "gpus": 2,
               "workloads": [{"name": "short", "isl": 512, "osl": 64}, {"name": "conv", "trace": "azure-conv"}],
               "slo": {"ttft_ms": 1000, "tbt_ms": 50}, "attainment": 0.9, "fidelity": "screen",
               "strategies": {"tp_options": [1], "chunk_sizes": [512], "disaggregated": False}},
              ["sweep", "{path}", "--out", "{out}.csv", "--workers", "1"]),
    "topology": ({"devices": [{"name": "a", "hardware": "jetson-agx-orin"}, {"name": "b", "hardware": "jetson-agx-orin"},
                              {"name": "c", "hardware": "jetson-agx-orin"}],
                  "links": [{"a": "a", "b": "b", "mbps": 100, "latency_s": 0.001, "jitter_s": 0.0005},
                            {"a": "b", "b": "c", "bandwidth_bps": 5e7}],
                  "split": [12, 10, 10]},
                 ["edge", "--topology", "{path}", "--output-len", "8"]),
    "device-cloud": ({"devices": 3, "device_hardware": "jetson-agx-orin", "cloud_hardware": "a6000", "cloud_gpus": 2,
                      "uplink_mbps": 50, "downlink_mbps": 100, "latency_s": 0.01, "input_layers": 1,
                      "output_layers": 1, "adapter_layers": 1},
                     ["device-cloud", "--setup", "{path}", "--output-len", "8"]),
    "mapping": ({"mappings": {"mine": packaged("mappings.yaml")["mappings"]["halo"]}},
                ["estimate", "--model", "meta-llama/Llama-2-7b-hf", "--hardware", "halo-2.5d", "--mapping", "{path}"]),
    "engine": ({"engines": {"mine": packaged("engines.yaml")["engines"]["vllm"]}},
               ["simulate", "--engine", "{path}", "--requests", "20", "--rate", "5", "--max-num-seqs", "32"]),
    "points": ({"points": POINTS[:6]}, ["fit-engine", "{path}", "--engine", "vllm"]),
    # a chip and a model as the user's own files, through a whole simulation (benchmarks/fuzz_configs.py costs
    # one iteration of every catalog entry; this runs the engine defaults, the start-up and the scheduler on them)
    "hardware": ({"hardware": {"mine": packaged("hardware_specs.yaml")["hardware"]["h100-sxm"]}},
                 ["simulate", "--hardware", "{path}", "--engine", "sglang", "--requests", "30", "--rate", "5"]),
    "chip-parts": ({"hardware": {"mine": packaged("hardware_specs.yaml")["hardware"]["spad-prefill-chip"]}},
                   ["simulate", "--hardware", "{path}", "--model", "meta-llama/Llama-3.1-8B", "--requests", "30",
                    "--rate", "5"]),
    "model-config": (packaged("models.yaml")["models"]["Qwen/Qwen3-30B-A3B"]["config"],
                     ["simulate", "--model", "{path}", "--hardware", "h100-sxm", "--tp", "2", "--requests", "30",
                      "--rate", "5"]),
    "mla-config": (packaged("models.yaml")["models"]["deepseek-ai/DeepSeek-V3"]["config"],
                   ["simulate", "--model", "{path}", "--hardware", "h200-sxm", "--tp", "8", "--ep", "8",
                    "--requests", "30", "--rate", "5"]),
}
JSON_FILES = ("model-config", "mla-config")  # written as a config.json
ODD = [None, 0, -1, 0.5, "abc", True, [1, 2], {"a": 1}, 10 ** 12, float("nan"), float("inf"), "", -0.0, 1e-300]


def field_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every field's path (dict keys and list indices), nested ones included."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        out.append(prefix + (key,))
        out.extend(field_paths(value, prefix + (key,)))
    return out


def mutate(seed: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], list[str]]:
    """The seed with one or two fields set to an odd value or removed; the changes in words."""
    doc, changes = copy.deepcopy(seed), []
    for path in rng.sample(field_paths(seed), k=min(rng.choice((1, 2)), len(field_paths(seed)))):
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
        except (KeyError, IndexError, TypeError):
            continue  # the first change removed or replaced this field's parent
        key = path[-1]
        if not (isinstance(parent, dict) or (isinstance(parent, list) and isinstance(key, int) and key < len(parent))):
            continue  # the first change replaced this field's parent with something else
        where = ".".join(str(k) for k in path)
        if isinstance(parent, dict) and rng.random() < 0.15:
            parent.pop(key, None)
            changes.append(f"{where} removed")
        else:
            value = rng.choice(ODD)
            parent[key] = value
            changes.append(f"{where} = {value!r}")
    return doc, changes


class TooSlow(Exception):
    pass


def _too_slow(*_: Any) -> None:
    raise TooSlow


def command(name: str, path: Path) -> list[str]:
    """The command line that reads seed `name`'s file at `path`."""
    if name in SEEDS:
        return ["simulate", "--deployment", str(path), *TRAFFIC.get(name, ["--trace", "azure-conv"]), *RUN]
    return [arg.format(path=path, out=path.with_suffix("")) for arg in OTHER_FILES[name][1]]


def guarded(work, seconds: float, expected: tuple[type[BaseException], ...]) -> tuple[BaseException | None, str | None]:
    """Run `work()` for at most `seconds`: (the exception of an `expected` type it ended with, if any; what went
    wrong, if anything: a time-out or any other exception)."""
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        work()
    except expected as exc:
        return exc, None
    except TooSlow:
        return None, f"no answer in {seconds:g} s"
    except Exception as exc:  # noqa: BLE001 - what the fuzzer is for
        return None, f"{type(exc).__name__}: {exc}"[:300]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return None, None


def run_case(argv: list[str], seconds: float, must_run: bool = False) -> str | None:
    """What is wrong with `phasewise argv` (None: it ran, or failed in one line with exit 2; with `must_run`,
    only if it ran)."""
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["phasewise", *argv]

    def work() -> None:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()

    ended, problem = guarded(work, seconds, (SystemExit,))
    if problem is not None:
        return problem
    code = 0 if ended is None else ended.code if isinstance(ended.code, int) else 1
    text = err.getvalue().strip()
    if code == 0:
        return None
    if must_run or code != 2:
        return f"exit {code}: {text[-300:]}"
    lines = [line for line in text.splitlines() if not line.startswith("warning:")]
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"exit 2 but not one line: {text[-300:]!r}"
    return None


def twin_case(path: Path, seconds: float, must_run: bool = False) -> str | None:
    """The twin's side of a deployment file (`serve --deployment`): LiveSim built from it, 20 requests submitted a
    quarter-second apart on its simulated clock and run out; what is wrong (None: it served them, or refused the
    file in one PhasewiseError line; with `must_run`, only if it served them)."""
    from phasewise.apps.twin_live import LiveSim
    from phasewise.errors import PhasewiseError
    from phasewise.sim import Slo
    from phasewise.sim.deployment import load_deployment

    clock, streams = [0.0], []

    def work() -> None:
        live = LiveSim(load_deployment(str(path)), slo=Slo(2000.0, 100.0))  # as serve's --slo-* flags give them
        live.now = lambda: clock[0]
        for k in range(20):
            clock[0] = 0.25 * k
            streams.append(live.submit(300 + 40 * k, 16))
        live.loop.run_until(3600.0)

    refused, problem = guarded(work, seconds, (PhasewiseError,))
    if problem is not None:
        return problem
    if refused is not None and (must_run or "\n" in str(refused)):
        return f"PhasewiseError: {refused}"[:300]
    if must_run and not all(s.done for s in streams):
        return f"{sum(not s.done for s in streams)} of 20 requests unfinished after an hour"
    return None


def main() -> int:
    seeds = {**SEEDS, **{name: doc for name, (doc, _) in OTHER_FILES.items()}}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=40, help="mutated files a seed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated seeds (default: all): " + ", ".join(seeds))
    ap.add_argument("--seconds", type=float, default=60.0, help="a case's time limit")
    ap.add_argument("--twin", action="store_true", help="also build the twin (serve's LiveSim) from each deployment "
                    "file and serve 20 requests through it")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(seeds)
    unknown = [n for n in names if n not in seeds]
    if unknown:
        print(f"--only: unknown seed {unknown[0]!r}; seeds: {', '.join(seeds)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGALRM, _too_slow)
    rng = random.Random(args.seed)
    failures = runs = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            path = Path(scratch) / (f"{name}.json" if name in JSON_FILES else f"{name}.yaml")
            write = json.dumps if name in JSON_FILES else (lambda doc: yaml.dump(doc, sort_keys=False))
            path.write_text(write(seeds[name]))
            twin = args.twin and name in TWIN_SEEDS
            if (why := run_case(command(name, path), args.seconds, must_run=True)) is not None:  # seeds must run
                print(f"{name} (unmutated): {why}")
                failures += 1
            if twin and (why := twin_case(path, args.seconds, must_run=True)) is not None:
                print(f"{name} (unmutated, twin): {why}")
                failures += 1
            for _ in range(args.cases):
                doc, changes = mutate(seeds[name], rng)
                if not changes:
                    continue
                path.write_text(write(doc))
                runs += 1
                if (why := run_case(command(name, path), args.seconds)) is not None:
                    failures += 1
                    print(f"{name} [{'; '.join(changes)}]: {why}")
                if twin and (why := twin_case(path, args.seconds)) is not None:
                    failures += 1
                    print(f"{name} [{'; '.join(changes)}] (twin): {why}")
    wall = time.perf_counter() - t0
    print(f"{runs} mutated files of {len(names)} seeds (+{len(names)} unmutated), {failures} failing, "
          f"{wall:.0f} s ({math.ceil(wall / (runs + len(names)) * 1000)} ms a run)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
