"""Vidur's simulator speed on bench_sim.py's scenario, for a side-by-side comparison.

    /tmp/vidur-venv/bin/python benchmarks/bench_vidur.py                 # 10,000 requests @ 10 req/s
    /tmp/vidur-venv/bin/python benchmarks/bench_vidur.py --requests 2000 --rate 10

Runs Vidur (PyPI `vidur`, the Georgia Tech / Microsoft discrete-event LLM-serving simulator) on the
scenario of benchmarks/bench_sim.py: open-loop Poisson arrivals at --rate, prompt/output lengths drawn
with replacement from the bundled Azure 2023 conversation excerpt, Llama-3-8B (Vidur's
"meta-llama/Llama-3-8B"; same architecture as Llama-3.1-8B) on one H100, TP 1, PP 1, one replica,
Vidur's vLLM replica scheduler (prefill-first, whole prompts) with batch_size_cap 256,
max_tokens_in_batch 8192, block size 16 and a 10% memory margin. Those are the settings of phasewise's
`vllm-v0` preset (vLLM 0.6's V0 scheduler: max_num_seqs 256, max_num_batched_tokens 8192, whole prompts,
16-token blocks, 0.9 of memory, no prefix caching), so the like-for-like phasewise run is
`python benchmarks/bench_sim.py --engine vllm-v0`. bench_sim.py's default engine, `vllm` (vLLM V1, 0.14 on
an H100), schedules differently: max_num_seqs 1024, chunked prefill in 8,192-token chunks mixed with decodes,
prefix caching and async scheduling on. Vidur has no V1 scheduler; this script runs no phasewise code.

What is stubbed, and why: Vidur's execution-time predictors (random forest / linear regression)
train on profiling data downloaded from Hugging Face (`model_profiling_dataset`, "project-vajra/..."),
which is unreachable here. This script registers RooflineStubPredictor, a subclass of Vidur's
BaseExecutionTimePredictor, under ExecutionTimePredictorType.DUMMY (an enum value Vidur defines but
leaves unregistered) and selects it with a predictor config whose get_type() returns DUMMY. Its
per-operation methods return a closed-form roofline time (a few float operations each), and Vidur's
own BaseExecutionTimePredictor.get_execution_time (Python path; use_native_execution_time_predictor
stays False) assembles them into its native ExecutionTime. Vidur's event loop, global and replica
schedulers, KV-block accounting, preemption and metrics store all run unmodified. This is fair:
Vidur's real predictor is itself a lookup into a table of predictions precomputed before the run
(dict lookups per operation, plus a Python loop over the batch to bucket KV lengths for attention),
so the stub costs about the same per iteration or slightly less (it never loops over the batch).
The simulated latencies are therefore roofline numbers, not Vidur's calibrated ones: only the wall
time is the point. Vidur writes its metrics (request_metrics.csv and CDF CSVs) at the end of run();
plots, the chrome trace, the JSON event trace and wandb are off. That write is timed separately.
Output goes to a temporary directory that is deleted afterwards. Vidur's Poisson generator caps
each gap at 3/rate, so its effective rate is ~5% higher (10.5 req/s at --rate 10): 10,000 arrivals
span ~950 s, not ~1000 s as in bench_sim.py.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

EXCERPT = Path(__file__).resolve().parents[1] / "src/phasewise/workload/data/azure_conv_excerpt.csv"

FLOPS = 700e12  # dense fp16 FLOP/s a big GEMM sustains on an H100 SXM
HBM_BW = 2.6e12  # bytes/s of HBM bandwidth sustained


def make_predictor_classes():
    from vidur.config import RandomForrestExecutionTimePredictorConfig
    from vidur.execution_time_predictor import BaseExecutionTimePredictor, ExecutionTimePredictorRegistry
    from vidur.types import ExecutionTimePredictorType

    class RooflineStubPredictorConfig(RandomForrestExecutionTimePredictorConfig):
        @staticmethod
        def get_type():
            return ExecutionTimePredictorType.DUMMY

    class RooflineStubPredictor(BaseExecutionTimePredictor):
        """Per-layer, per-operation times in ms (Vidur's unit) from a roofline; no profiling data."""

        def __init__(self, predictor_config, replica_config, cache_config) -> None:
            super().__init__(predictor_config, replica_config, cache_config)
            m, rc = self._model_config, replica_config
            d, hd, tp = m.embedding_dim, rc.attention_head_dim, rc.tensor_parallel_size
            qh, kvh = rc.q_heads_per_tensor_parallel_worker, rc.kv_heads_per_tensor_parallel_worker
            ff = m.mlp_hidden_dim // tp
            # weight counts per device per layer
            self._w_pre, self._w_post = d * (qh + 2 * kvh) * hd, qh * hd * d
            self._w_up, self._w_down = d * ff * (2 if m.use_gated_mlp else 1), ff * d
            self._kv_bytes = 2 * 2 * kvh * hd  # K and V, fp16, one token, one layer
            self._attn_flops = 4 * qh * hd  # QK^T and PV FLOPs per (query, key) pair
            self._elem_ms = 2 * 2 * d / HBM_BW * 1e3  # read+write one fp16 hidden vector, ms

        @staticmethod
        def _gemm_ms(weights: int, tokens: int) -> float:
            return max(2.0 * tokens * weights / FLOPS, 2.0 * weights / HBM_BW) * 1e3

        def _get_attention_layer_pre_proj_execution_time(self, batch) -> float:
            return self._gemm_ms(self._w_pre, batch._total_num_q_tokens_rounded)

        def _get_attention_layer_post_proj_execution_time(self, batch) -> float:
            return self._gemm_ms(self._w_post, batch._total_num_q_tokens_rounded)

        def _get_mlp_layer_up_proj_execution_time(self, batch) -> float:
            return self._gemm_ms(self._w_up, batch._total_num_q_tokens_rounded)

        def _get_mlp_layer_down_proj_execution_time(self, batch) -> float:
            return self._gemm_ms(self._w_down, batch._total_num_q_tokens_rounded)

        def _get_attention_prefill_execution_time(self, batch) -> float:
            p = batch._num_prefill_tokens
            if not p:
                return 0.0
            # causal attention over the prompt: ~ p * (mean kv length) / 2 (query, key) pairs
            avg_kv = batch._total_num_kv_tokens / len(batch._requests)
            return self._attn_flops * p * avg_kv * 0.5 / FLOPS * 1e3

        def _get_attention_decode_execution_time(self, batch) -> float:
            p = batch._num_prefill_tokens
            if p == batch._total_num_q_tokens:
                return 0.0
            # decode attention reads every decoding request's KV once (prefill-first: no mixing)
            return (batch._total_num_kv_tokens - p) * self._kv_bytes / HBM_BW * 1e3

        def _get_mlp_layer_act_execution_time(self, batch) -> float:
            return 2.5 * self._elem_ms * batch._total_num_q_tokens

        def _get_attn_norm_layer_act_execution_time(self, batch) -> float:
            return self._elem_ms * batch._total_num_q_tokens

        def _get_mlp_norm_layer_act_execution_time(self, batch) -> float:
            return self._elem_ms * batch._total_num_q_tokens

        def _get_add_layer_act_execution_time(self, batch) -> float:
            return 1.5 * self._elem_ms * batch._total_num_q_tokens

        def _get_attention_rope_execution_time(self, batch) -> float:
            return self._elem_ms * batch._total_num_q_tokens

        def _get_attention_kv_cache_save_execution_time(self, batch) -> float:
            return batch._total_num_q_tokens * self._kv_bytes / HBM_BW * 1e3

        def _get_tensor_parallel_communication_time(self, batch) -> float:
            return 0.0  # TP 1

        def _get_pipeline_parallel_communication_time(self, batch) -> float:
            return 0.0  # PP 1

        def _get_kv_parallel_communication_time(self, batch) -> float:
            return 0.0

    ExecutionTimePredictorRegistry.register(ExecutionTimePredictorType.DUMMY, RooflineStubPredictor)
    return RooflineStubPredictorConfig


def write_length_csv(path: Path, n: int, seed: int) -> None:
    """n (prompt, output) pairs drawn with replacement from the excerpt, in Vidur's trace columns."""
    with open(EXCERPT, newline="") as f:
        rows = [(int(r["num_prefill_tokens"]), int(r["num_decode_tokens"])) for r in csv.DictReader(f)]
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["num_prefill_tokens", "num_decode_tokens"])
        w.writerows(rng.choice(rows) for _ in range(n))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--token-metrics", action=argparse.BooleanOptionalAction, default=True,
                    help="Vidur's per-decode-token metrics (on by default: phasewise computes TBT too)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    try:
        import vidur  # noqa: F401
    except ImportError:
        print(f"bench_vidur: skipped, `vidur` is not importable by {sys.executable} "
              "(run with /tmp/vidur-venv/bin/python)")
        return 0

    import logging

    from vidur.config import (
        CacheConfig,
        ClusterConfig,
        MetricsConfig,
        PoissonRequestIntervalGeneratorConfig,
        ReplicaConfig,
        RoundRobinGlobalSchedulerConfig,
        SimulationConfig,
        SyntheticRequestGeneratorConfig,
        TraceRequestLengthGeneratorConfig,
        VllmSchedulerConfig,
    )
    from vidur.metrics.constants import BatchMetricsCountDistribution as BM
    from vidur.metrics.constants import RequestMetricsTimeDistributions as RM
    from vidur.simulator import Simulator

    logging.getLogger("vidur").setLevel(logging.WARNING)
    stub_config_cls = make_predictor_classes()
    tmp = Path(tempfile.mkdtemp(prefix="bench_vidur_"))
    try:
        lengths = tmp / "lengths.csv"
        write_length_csv(lengths, args.requests, args.seed)

        t0 = time.perf_counter()
        config = SimulationConfig(
            seed=args.seed,
            cluster_config=ClusterConfig(
                num_replicas=1,
                replica_config=ReplicaConfig(model_name="meta-llama/Llama-3-8B", num_pipeline_stages=1,
                                             tensor_parallel_size=1, device="h100", network_device="h100_dgx"),
                cache_config=CacheConfig(block_size=16, memory_margin_fraction=0.1),
                global_scheduler_config=RoundRobinGlobalSchedulerConfig(),
                replica_scheduler_config=VllmSchedulerConfig(batch_size_cap=256, max_tokens_in_batch=8192),
            ),
            request_generator_config=SyntheticRequestGeneratorConfig(
                seed=args.seed,
                length_generator_config=TraceRequestLengthGeneratorConfig(
                    seed=args.seed, trace_file=str(lengths), max_tokens=8192),
                interval_generator_config=PoissonRequestIntervalGeneratorConfig(seed=args.seed, qps=args.rate),
                num_requests=args.requests,
            ),
            execution_time_predictor_config=stub_config_cls(cache_dir=str(tmp / "cache")),
            metrics_config=MetricsConfig(
                write_metrics=True, write_json_trace=False, enable_chrome_trace=False, store_plots=False,
                store_token_completion_metrics=args.token_metrics, output_dir=str(tmp / "out"),
            ),
        )
        sim = Simulator(config)  # builds cluster, schedulers, predictor, generates all requests
        t1 = time.perf_counter()

        write_s = [0.0]
        write_output = sim._write_output

        def timed_write_output() -> None:
            tw = time.perf_counter()
            write_output()
            write_s[0] = time.perf_counter() - tw

        sim._write_output = timed_write_output
        sim.run()
        t2 = time.perf_counter()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    build, run_total = t1 - t0, t2 - t1
    loop = run_total - write_s[0]
    wall = t2 - t0
    ttft = [y for _, y in sim.metric_store._request_metrics_time_distributions[RM.PREFILL_TIME_E2E]._data_series]
    e2e = sorted(y for _, y in sim.metric_store._request_metrics_time_distributions[RM.REQUEST_E2E_TIME]._data_series)
    ttft.sort()
    iters = len(sim.metric_store._batch_metrics_count_distribution[BM.BATCH_SIZE])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"vidur {vidur.__version__}: {args.requests} requests @ {args.rate} req/s (vllm, Llama-3-8B, 1x H100, "
          f"roofline stub predictor, token metrics {'on' if args.token_metrics else 'off'})")
    print(f"  wall {wall:.3f} s = build {build:.3f} s (incl. request generation) + event loop {loop:.3f} s "
          f"+ metrics write {write_s[0]:.3f} s")
    print(f"  {args.requests / wall:,.0f} simulated requests/s (whole), "
          f"{args.requests / (build + loop):,.0f} excluding the metrics write, "
          f"{args.requests / loop:,.0f} event loop only; peak RSS {rss:.0f} MiB")
    if ttft:
        print(f"  simulated makespan {sim._time:.0f} s, {len(ttft)} completed, {iters:,} iterations (batches), "
              f"TTFT mean {1e3 * sum(ttft) / len(ttft):.0f} ms p50 {1e3 * ttft[len(ttft) // 2]:.0f} ms, "
              f"e2e p50 {e2e[len(e2e) // 2]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
