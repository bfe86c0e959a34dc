"""Every catalog model's config.json, and every catalog chip's hardware entry written as a user's hardware YAML,
with one or two of its fields (nested ones included: text_config, vision_config, linear_attn_config; interconnect,
parts) set to an odd value (none, zero, negative, a fraction, text, a boolean, a list, an object, 10^12, NaN) or
removed, in this process: each either loads and costs an iteration (a prefill and a decode step: a model on an
H200 instance of 8 GPUs, or of the most of 4, 2 and 1 its heads allow, a chip under Llama-3.1-8B, with its memory
fit) or fails with a one-line PhasewiseError, never another exception, a multi-line message or more than --seconds
of work. Prints each case that does not, with the fields it changed, then the count.

    python benchmarks/fuzz_configs.py                        # 40 cases an entry, seed 0 (a few seconds)
    python benchmarks/fuzz_configs.py --cases 200 --seed 3 --model qwen3-vl-30b-a3b --kind model
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel, memory_fit
from phasewise.perf.parallel import check_parallelism
from phasewise.specs import load_engine, load_hardware, load_quant
from phasewise.specs.catalog import packaged
from phasewise.specs.hf_config import from_hf_config
from phasewise.specs.model_catalog import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import at_least, known  # noqa: E402 - the scripts' shared flag checks

VALUES = [None, 0, -1, 1, 2, 3, 7, 1.5, "x", "4096", True, False, [], [1, 2], {}, {"a": 1}, 10**12, math.nan]
REMOVED = object()


def field_paths(cfg: dict[str, Any] | list, prefix: tuple = ()) -> list[tuple]:
    """Every key of a config, nested objects' keys and list items' (by index) as paths."""
    paths = []
    for key, value in (enumerate(cfg) if isinstance(cfg, list) else cfg.items()):
        paths.append(prefix + (key,))
        if isinstance(value, (dict, list)):
            paths += field_paths(value, prefix + (key,))
    return paths


def _child(parent: Any, key: Any) -> Any:
    if isinstance(parent, dict):
        return parent.get(key)
    if isinstance(parent, list) and isinstance(key, int) and key < len(parent):
        return parent[key]
    return None


def mutate(cfg: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], list]:
    """A copy of `cfg` with one or two fields set to an odd value or removed, and what was changed."""
    out, changes = copy.deepcopy(cfg), []
    paths = field_paths(cfg)
    for _ in range(rng.choice((1, 1, 2))):
        path = rng.choice(paths)
        parent = out
        for key in path[:-1]:
            parent = _child(parent, key)
        if _child(parent, path[-1]) is None and not isinstance(parent, dict):
            continue  # an earlier change replaced or shortened what this path went through
        value = REMOVED if rng.random() < 0.15 else rng.choice(VALUES)
        if value is REMOVED:
            parent.pop(path[-1]) if isinstance(parent, list) else parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
        changes.append((".".join(map(str, path)), "removed" if value is REMOVED else value))
    return out, changes


def cost_one(model: Any, hardware: Any, tp: int) -> None:
    """A prefill and a decode step of `model` on `tp` x `hardware`, and its memory fit."""
    cost = CostModel(model, hardware, load_quant("bf16"), load_engine("vllm"), tp, 1)
    cost.iteration(BatchShape.uniform(2, 64, 0))
    cost.iteration(BatchShape.uniform(2, 1, 64))
    memory_fit(model, hardware, load_quant("bf16"), tp, 1)


def model_tp(cfg: dict[str, Any]) -> int:
    """The widest of 8, 4, 2 and 1 that the unmutated model's heads allow (Qwen2.5-VL-7B's 28 heads: 4), so that its
    mutations reach the cost model instead of all stopping at the TP check."""
    model = from_hf_config("base", cfg)
    for tp in (8, 4, 2):
        try:
            check_parallelism(model, tp, 1)
            return tp
        except PhasewiseError:
            continue
    return 1


def model_case(cfg: dict[str, Any], scratch: Path, tp: int = 8) -> None:
    cost_one(from_hf_config("fuzzed", cfg), load_hardware("h200-sxm"), tp)


def hardware_case(key: str, entry: dict[str, Any], scratch: Path) -> None:
    path = scratch / "chip.yaml"  # as a user's hardware file, one entry under hardware:
    path.write_text(yaml.safe_dump({"hardware": {key: entry}}))
    cost_one(load_model("meta-llama/Llama-3.1-8B"), load_hardware(str(path)), 1)


def _too_slow(*_: Any) -> None:
    raise TimeoutError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=at_least(1), default=40, help="mutated configs per model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", action="append", help="only this catalog model (repeatable; default: every one)")
    ap.add_argument("--kind", choices=("all", "model", "hardware"), default="all", help="which catalog to mutate")
    ap.add_argument("--seconds", type=at_least(1), default=10, help="the most one case may take")
    args = ap.parse_args()
    if args.model and args.kind == "hardware":
        ap.error("--model picks catalog models; --kind hardware mutates the chips only (use --kind model or all)")
    known(ap, "--model", args.model or [], load_model)
    models = packaged("models.yaml")["models"]
    chips = packaged("hardware_specs.yaml")["hardware"]
    entries = []  # (name, base entry, case(mutated entry, scratch folder))
    if args.kind in ("all", "model"):
        names = [load_model(name).name for name in args.model] if args.model else list(models)
        entries += [(name, models[name]["config"],
                     lambda cfg, scratch, tp=model_tp(models[name]["config"]): model_case(cfg, scratch, tp))
                    for name in names]
    if args.kind in ("all", "hardware"):
        entries += [(key, entry, lambda cfg, scratch, key=key: hardware_case(key, cfg, scratch))
                    for key, entry in chips.items()]
    rng = random.Random(args.seed)
    signal.signal(signal.SIGALRM, _too_slow)
    scratch = Path(tempfile.mkdtemp(prefix="phasewise-fuzz-"))
    failing, refused, costed, cases, t0 = 0, 0, 0, 0, time.perf_counter()
    for name, base, case in entries:
        for _ in range(args.cases):
            cfg, changes = mutate(base, rng)
            cases += 1
            signal.alarm(args.seconds)
            try:
                case(cfg, scratch)
                costed += 1
            except PhasewiseError as exc:
                refused += 1
                if "\n" in str(exc):
                    failing += 1
                    print(f"{name} {changes}: a multi-line error: {exc!s:.200}")
            except TimeoutError:
                failing += 1
                print(f"{name} {changes}: more than {args.seconds} s")
            except Exception as exc:  # noqa: BLE001 - what this fuzz is for
                failing += 1
                print(f"{name} {changes}: {type(exc).__name__}: {exc!s:.200}")
            finally:
                signal.alarm(0)
    (scratch / "chip.yaml").unlink(missing_ok=True)
    scratch.rmdir()
    print(f"{cases} cases over {len(entries)} catalog entries: {costed} costed, {refused} refused by PhasewiseError, "
          f"{failing} failing, in {time.perf_counter() - t0:.1f} s")
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
