"""`phasewise validate --serve`: a minimal real continuous-batching loop on a transformers Llama
(random weights), driven by a small closed-loop workload, against `simulate()` of the same workload.

The loop is vLLM-style prefill-first: while a request waits and a seat is free, one iteration
prefills its whole prompt (its first token comes out of that iteration); otherwise one iteration
decodes one token for every running request, batching the linear layers over them and running
attention per sequence against its own preallocated KV cache. Token times are wall-clock times.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.measure.torch_env import (
    MAX_REPEATS,
    MAX_REQUESTS,
    check_run_fits,
    need_transformers,
    torch_and_device,
)
from phasewise.measure.validate import measured_engine, scaled_config, timed_hardware
from phasewise.perf.memory import weight_bytes_per_gpu
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_model, load_quant
from phasewise.specs.hf_config import from_hf_config
from phasewise.workload import ClosedLoop, LengthDist

OPS_PER_SEQUENCE_LAYER = 6  # RoPE (2), two KV writes, attention, reshape: the loop's per-sequence dispatch


@dataclass(slots=True)
class Req:
    rid: int
    prompt: int
    output: int
    arrival: float
    token_times: list[float] = field(default_factory=list)
    pos: int = 0
    keys: list = field(default_factory=list)  # per layer: the sequence's K cache (kv_heads x tokens x head_dim)
    values: list = field(default_factory=list)  # and its V cache
    last: int = 0


class MiniEngine:
    """Continuous batching over a transformers LlamaForCausalLM's modules."""

    def __init__(self, hf, torch, dev, max_batch: int) -> None:
        self.hf, self.torch, self.dev, self.max_batch = hf, torch, dev, max_batch
        cfg = hf.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.layers = hf.model.layers
        self.dtype = next(hf.parameters()).dtype

    def _rope(self, x, positions):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        cos, sin = self.hf.model.rotary_emb(x, positions)
        return cos, sin, apply_rotary_pos_emb

    def prefill(self, r: Req) -> None:
        torch = self.torch
        T = r.prompt
        ids = torch.randint(0, self.hf.config.vocab_size, (1, T), device=self.dev)
        pos = torch.arange(T, device=self.dev)[None]
        h = self.hf.model.embed_tokens(ids)
        cos, sin, rot = self._rope(h, pos)
        r.keys = [torch.zeros(self.kv_heads, r.prompt + r.output, self.hd, device=self.dev, dtype=self.dtype)
               for _ in self.layers]
        r.values = [torch.zeros_like(r.keys[0]) for _ in self.layers]
        for i, layer in enumerate(self.layers):
            a = layer.self_attn
            x = layer.input_layernorm(h)
            q = a.q_proj(x).view(1, T, self.heads, self.hd).transpose(1, 2)
            k = a.k_proj(x).view(1, T, self.kv_heads, self.hd).transpose(1, 2)
            v = a.v_proj(x).view(1, T, self.kv_heads, self.hd).transpose(1, 2)
            q, k = rot(q, k, cos, sin)
            r.keys[i][:, :T] = k[0]
            r.values[i][:, :T] = v[0]
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            h = h + a.o_proj(o.transpose(1, 2).reshape(1, T, -1))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        logits = self.hf.lm_head(self.hf.model.norm(h[:, -1:]))
        r.last = int(logits.argmax(-1))
        r.pos = T

    def decode(self, running: list[Req]) -> None:
        torch = self.torch
        S = len(running)
        ids = torch.tensor([[r.last] for r in running], device=self.dev)
        pos = torch.tensor([[r.pos] for r in running], device=self.dev)
        h = self.hf.model.embed_tokens(ids)  # [S, 1, hidden]
        cos, sin, rot = self._rope(h, pos)
        for i, layer in enumerate(self.layers):
            a = layer.self_attn
            x = layer.input_layernorm(h)
            q = a.q_proj(x).view(S, 1, self.heads, self.hd).transpose(1, 2)
            k = a.k_proj(x).view(S, 1, self.kv_heads, self.hd).transpose(1, 2)
            v = a.v_proj(x).view(S, 1, self.kv_heads, self.hd).transpose(1, 2)
            q, k = rot(q, k, cos, sin)
            outs = []
            for j, r in enumerate(running):  # attention per sequence, against its own cache
                r.keys[i][:, r.pos] = k[j, :, 0]
                r.values[i][:, r.pos] = v[j, :, 0]
                n = r.pos + 1
                outs.append(torch.nn.functional.scaled_dot_product_attention(
                    q[j:j + 1], r.keys[i][None, :, :n], r.values[i][None, :, :n], enable_gqa=True))
            o = torch.cat(outs).transpose(1, 2).reshape(S, 1, -1)
            h = h + a.o_proj(o)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        logits = self.hf.lm_head(self.hf.model.norm(h))
        nxt = logits.argmax(-1)[:, 0].tolist()
        for r, t in zip(running, nxt):
            r.last, r.pos = int(t), r.pos + 1


def run_real(hf, torch, dev, clients: int, requests: int, prompt: int, output: int, max_batch: int) -> list[Req]:
    """Closed loop: `clients` each send a request when their last one finishes."""
    eng = MiniEngine(hf, torch, dev, max_batch)
    with torch.inference_mode():  # warm-up (allocator, first-call paths), as serving benchmarks do; untimed
        warm = [Req(-1 - i, prompt, output, 0.0) for i in range(min(clients, max_batch))]
        for r in warm:
            eng.prefill(r)
        eng.decode(warm)
    t0 = time.perf_counter()
    issued = iter(range(requests))
    waiting: deque[Req] = deque(Req(i, prompt, output, 0.0) for i in (next(issued) for _ in range(min(clients,
                                                                                                          requests))))
    running: list[Req] = []
    done: list[Req] = []
    with torch.inference_mode():
        while waiting or running:
            if waiting and len(running) < max_batch:  # prefill-first: one whole prompt per iteration
                r = waiting.popleft()
                eng.prefill(r)
                r.token_times.append(time.perf_counter() - t0)
                running.append(r)
            else:
                eng.decode(running)
                now = time.perf_counter() - t0
                for r in running:
                    r.token_times.append(now)
            for r in [r for r in running if len(r.token_times) >= r.output]:
                running.remove(r)
                done.append(r)
                nxt = next(issued, None)
                if nxt is not None:
                    waiting.append(Req(nxt, prompt, output, r.token_times[-1]))
    return sorted(done, key=lambda r: r.rid)


def serve_check(model: str, hardware: str, device: str = "cpu", layers: int | None = None, hidden: int | None = None,
                engine: str | None = None, clients: int = 4, requests: int = 16, prompt: int = 128, output: int = 32,
                threads: int | None = None, repeats: int = 1) -> dict[str, Any]:
    """Real loop vs simulate() for the same closed-loop workload: TTFT and TBT distributions. The real loop runs
    `repeats` times and each figure is the median over the runs (a shared machine's speed moves between runs of a
    second: this loop's TBT by up to 1.8x here, MEASURING.md)."""
    torch, dev = torch_and_device(device, threads)
    transformers = need_transformers()
    spec = load_model(model)
    cfg = scaled_config(spec, layers, hidden)
    small = from_hf_config(f"{spec.name} (scaled)", cfg)
    if clients < 1 or requests < 1 or prompt < 1 or output < 2 or repeats < 1:
        raise PhasewiseError("--serve needs clients, requests, prompt, repeats >= 1 and output >= 2")
    if clients > requests:  # warm-up and the loop hold `clients` requests: 10^11 of them was a MemoryError
        raise PhasewiseError(f"--clients {clients} is more than --requests {requests}: a closed loop never has more "
                             "requests in flight than it sends")
    for flag, value, most in (("--requests", requests, MAX_REQUESTS), ("--repeats", repeats, MAX_REPEATS)):
        if value > most:
            raise PhasewiseError(f"{flag} must be at most {most:,} for a real run here (got {value:,})")
    check_run_fits("the --serve loop", cfg, small.total_params, prompt, clients * (prompt + output), clients,
                   2 if dev.type == "cuda" else 4, torch, dev, "lower --clients, --prompt or --output")
    # The chip and engine the simulator runs on, resolved before the loop is timed (one rule: measured_engine)
    hw = timed_hardware(hardware, dev.type)
    eng = measured_engine(hardware, engine)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}))
    hf = hf.to(dev, torch.bfloat16 if dev.type == "cuda" else torch.float32).eval()
    runs = [run_real(hf, torch, dev, clients, requests, prompt, output, clients) for _ in range(repeats)]

    # The same workload through the simulator: the calibrated chip and engine, prefill-first with one
    # prompt per prefill iteration, plus the loop's per-sequence attention dispatch.
    precision = "bf16" if dev.type == "cuda" else "fp32"
    layer_bytes = weight_bytes_per_gpu(small, load_quant(precision), 1, 1, embeddings=False) / small.num_layers
    per_seq = small.num_layers * OPS_PER_SEQUENCE_LAYER * hw.efficiency.kernel_launch_at(layer_bytes)
    eng = eng.model_copy(update={"per_sequence_overhead_s": eng.per_sequence_overhead_s + per_seq})
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        cfg_path, eng_path = f"{tmp}/model.json", f"{tmp}/engine.yaml"
        import json

        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        with open(eng_path, "w") as f:
            entry = dict(eng.model_dump(mode="json", exclude={"name"}), scheduler="vllm-v0")  # the loop's policy
            yaml.safe_dump({"engines": {eng.name: entry}}, f)
        dep = build_deployment({"model": cfg_path, "instances": [dict(
            hardware=hardware, precision=precision, engine=eng_path,
            max_num_seqs=clients, max_num_batched_tokens=prompt, memory_fraction=0.5)]})
        sim = simulate(dep, ClosedLoop(clients, requests, LengthDist("fixed", prompt), LengthDist("fixed", output)),
                       Slo())

    def dist(x: np.ndarray) -> dict[str, float]:
        x = x[np.isfinite(x)] * 1e3
        return {"p50": float(np.percentile(x, 50)), "p90": float(np.percentile(x, 90)), "mean": float(x.mean())}

    def measured(real: list[Req]) -> dict[str, Any]:
        return {"ttft_ms": dist(np.array([r.token_times[0] - r.arrival for r in real])),
                "tbt_ms": dist(np.concatenate([np.diff(r.token_times) for r in real])),
                "duration_s": max(r.token_times[-1] for r in real)}

    per_run = [measured(real) for real in runs]
    median = {m: {q: float(np.median([run[m][q] for run in per_run])) for q in ("p50", "p90", "mean")}
              for m in ("ttft_ms", "tbt_ms")}
    median["duration_s"] = float(np.median([run["duration_s"] for run in per_run]))
    sim_s = sim.summary()
    out = {"model": small.name, "params": small.total_params, "clients": clients, "requests": requests,
           "prompt": prompt, "output": output, "repeats": repeats, "real": median, "real_runs": per_run,
           "simulated": {"ttft_ms": {k: sim_s["ttft_ms"][k] for k in ("p50", "p90", "mean")},
                         "tbt_ms": {k: sim_s["tbt_ms"][k] for k in ("p50", "p90", "mean")},
                         "duration_s": sim_s["duration_s"]}}
    out["errors"] = {f"{m}_{q}": out["simulated"][m][q] / out["real"][m][q] - 1
                     for m in ("ttft_ms", "tbt_ms") for q in ("p50", "p90", "mean") if out["real"][m][q] > 0}
    out["errors"]["duration"] = out["simulated"]["duration_s"] / out["real"]["duration_s"] - 1
    out["median_abs_error"] = float(np.median([abs(v) for v in out["errors"].values()]))
    return out
