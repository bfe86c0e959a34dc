"""Engine start-up: how long a replica takes from its engine starting to its API port answering, the lag an
autoscaler pays for every replica it adds (the twin waits it out before listening: `serve --cold-start`).

Four parts, as the engines log them (specs/data/startup.yaml has each constant with the log lines it comes from):
- weights: the instance's checkpoint read at a host's read rate (a checkpoint in the page cache by default;
  `--weights-read-gbps` for a cold disk or a network store), the hosts of a multi-host instance reading their
  shares at once (a host: the chip's gpus_per_host, the 4-GPU compute tray of an NVL72 rack, not its 72-GPU NVLink
  domain);
- init: the engine's memory profiling run, KV cache allocation and warm-up;
- compile: torch.compile, where the engine compiles by default (vLLM V1, on a CPU too: its CPU platform compiles
  with Inductor, vllm/platforms/cpu.py), per decoder layer of a pipeline stage, cold (no compile cache on disk) or
  warm (the cache reused);
- graphs: CUDA-graph capture, per captured batch size per decoder layer of a stage (none on a CPU:
  HardwareSpec.captures_cuda_graphs).
The stages of a pipeline start in parallel, so a stage's layers count, not the model's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.perf.memory import weight_bytes_per_gpu
from phasewise.specs.catalog import packaged
from phasewise.specs.engine_defaults import sglang_capture_sizes, trtllm_graph_sizes
from phasewise.specs.engine_presets import preset_key
from phasewise.specs.engines import EngineConfig
from phasewise.specs.hardware import HardwareSpec

COMPILE_CACHES = ("cold", "warm")


@dataclass(slots=True, frozen=True)
class StartupEstimate:
    weights_s: float
    init_s: float
    compile_s: float
    graphs_s: float
    checkpoint_bytes: float  # what the instance reads
    captured_graphs: int  # batch sizes captured
    compile_cache: str | None  # cold | warm; None for an engine that runs no torch.compile (no cache to be either)
    source: str

    @property
    def total_s(self) -> float:
        return self.weights_s + self.init_s + self.compile_s + self.graphs_s

    def to_dict(self) -> dict[str, Any]:
        return {"total_s": self.total_s, "weights_s": self.weights_s, "init_s": self.init_s,
                "compile_s": self.compile_s, "graphs_s": self.graphs_s, "checkpoint_bytes": self.checkpoint_bytes,
                "captured_graphs": self.captured_graphs, "compile_cache": self.compile_cache, "source": self.source}

    def summary(self) -> str:
        """The one start-up line (estimate's, serve --cold-start auto's)."""
        compiled = ("no torch.compile" if self.compile_cache is None else
                    f"torch.compile {self.compile_s:.1f} s ({self.compile_cache} cache)")
        return (f"{self.total_s:.0f} s: weights {self.weights_s:.1f} s ({self.checkpoint_bytes / 1e9:.1f} GB), init "
                f"{self.init_s:.0f} s, {compiled}, {self.captured_graphs} CUDA graphs {self.graphs_s:.1f} s")


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return packaged("startup.yaml")


def _constants(engine: EngineConfig) -> dict[str, Any]:
    """startup.yaml's constants for `engine`'s preset (an engine file: the preset it refines, preset_key), else its
    `default` entry."""
    engines = _table()["engines"]
    return engines.get(preset_key(engine.engine), engines["default"])


def captured_graphs(engine: EngineConfig, hw: HardwareSpec | None = None) -> int:
    """How many batch sizes the engine captures a CUDA graph for at start-up on `hw` (none on a CPU; None: a GPU)."""
    profile = engine.profile
    on_device = hw is None or hw.captures_cuda_graphs
    if not (profile.cuda_graphs and on_device) or not _constants(engine).get("captures", True):
        return 0
    if engine.scheduler == "sglang" and profile.cuda_graph_sizes:  # the simulated replay lists every size
        return len(sglang_capture_sizes(max(profile.cuda_graph_sizes)))
    if profile.cuda_graph_sizes:
        return len(profile.cuda_graph_sizes)
    largest = min(profile.cuda_graph_max_batch, engine.max_seqs)
    if engine.scheduler == "trtllm":  # trtllm-bench: padded graphs up to its batch
        return len(trtllm_graph_sizes(largest, profile.cuda_graph_padding))
    # sizes not listed (vLLM V0 and the engines run as it): 1, 2, 4 and the multiples of 8 up to its largest batch
    return len([size for size in (1, 2, 4) if size <= largest]) + largest // 8


def startup_estimate(cost, engine: EngineConfig, weights_read_gbps: float | None = None,
                     compile_cache: str | None = None) -> StartupEstimate:
    """The start-up of one instance whose forward `cost` (perf/cost.py CostModel) prices, run by `engine`; None:
    a checkpoint in the page cache (startup.yaml's read rate), no compile cache (cold). An engine that runs no
    torch.compile has no compile cache: its estimate's compile_cache is None, and asking for one is refused."""
    if compile_cache is not None and compile_cache not in COMPILE_CACHES:
        raise PhasewiseError(f"--compile-cache must be one of {', '.join(COMPILE_CACHES)} (got '{compile_cache}')")
    constants = _constants(engine)
    compiles = constants["compile_cold_s_per_layer"] or constants["compile_warm_s_per_layer"]
    if compile_cache is not None and not compiles:
        raise PhasewiseError(f"--compile-cache {compile_cache} does not apply to engine '{engine.label}': it runs no "
                             "torch.compile at start-up (vLLM V1 compiles by default; startup.yaml), so there is no "
                             "compile cache to be cold or warm; drop --compile-cache")
    if compiles:
        compile_cache = "cold" if compile_cache is None else compile_cache
    if weights_read_gbps is not None and not (weights_read_gbps > 0 and math.isfinite(weights_read_gbps)):
        raise PhasewiseError(f"--weights-read-gbps must be a finite number > 0 (got {weights_read_gbps:g})")
    read = float(_table()["weights_read_bytes_per_s"]) if weights_read_gbps is None else weights_read_gbps * 1e9
    stage_layers = cost.layers_per_stage
    gpus = cost.tp * cost.pp
    hosts = math.ceil(gpus / cost.hw.interconnect.gpus_per_host)  # each reads its GPUs' share of the checkpoint
    checkpoint = weight_bytes_per_gpu(cost.model, cost.quant, 1, 1)
    compile_per_layer = constants[f"compile_{compile_cache}_s_per_layer"] if compiles else 0.0
    graphs = captured_graphs(engine, cost.hw)
    return StartupEstimate(
        weights_s=checkpoint / (read * hosts), init_s=float(constants["init_s"]),
        compile_s=compile_per_layer * stage_layers,
        graphs_s=graphs * stage_layers * constants["capture_s_per_graph_layer"],
        checkpoint_bytes=checkpoint, captured_graphs=graphs, compile_cache=compile_cache,
        source=constants["source"])
