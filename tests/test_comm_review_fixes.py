"""Communication review fixes: a KV hand-off moves what each receiving GPU holds (multi-head latent attention's
latent whole on every GPU, not a TP shard of it), in the sender's KV dtype whatever the order of the groups, and
vLLM's NixlConnector refuses a prefill / decode pair whose KV dtypes differ."""

from __future__ import annotations

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf.kv_geometry import kv_bytes_per_token_layer
from phasewise.sim.api import run
from phasewise.sim.deployment import build_deployment
from phasewise.sim.link import link_rate
from phasewise.sim.metrics import Slo
from phasewise.sim.simulate import simulate
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.workload import LengthDist, open_loop

DEEPSEEK = "deepseek-ai/DeepSeek-V3"


def _ttft_ms(**flags) -> float:
    return run(requests=2, rate=0.01, isl=8192, osl=4, **flags).summary()["ttft_ms"]["mean"]


def test_an_mla_latent_crosses_each_decode_gpus_own_lane_whole():
    """DeepSeek-V3 at TP8: every decode GPU holds the whole 70,272-byte-a-token latent (MLA is always replicated), so
    an 8,192-token prompt's 576 MB cross each GPU's own NIC: RDMA minus NVLink is 576 MB over one lane of each (13.6
    ms here), where the latent had been cut into eight shards (1.7 ms). On GB200s: one NVL72 rack holds both phases'
    16 GPUs (16 H200s span two 8-GPU nodes, whose KV cannot cross NVLink)."""
    hw = load_hardware("gb200")
    model = load_model(DEEPSEEK)
    per_gpu = kv_bytes_per_token_layer(model, load_quant("fp8-block"), 8) * model.num_layers * 8192
    efficiency = 0.8  # efficiency.yaml link_efficiency (the chip's)
    expected_ms = 1e3 * per_gpu / efficiency * (1 / link_rate(hw.interconnect, "rdma")[0]
                                                - 1 / link_rate(hw.interconnect, "nvlink")[0])
    flags = dict(arch="disagg", model=DEEPSEEK, hardware="gb200", tp=8)
    gap_ms = _ttft_ms(kv_link="rdma", **flags) - _ttft_ms(kv_link="nvlink", **flags)
    assert expected_ms > 10 and gap_ms == pytest.approx(expected_ms, rel=0.02)


def _pair(first: str, decode_kv: str | None = "fp8", engine: str = "sglang") -> dict:
    prefill = {"role": "prefill", "hardware": "h100-sxm", "engine": engine}
    decode = {"role": "decode", "hardware": "h100-sxm", "engine": engine, "kv_dtype": decode_kv}
    groups = [prefill, decode] if first == "prefill" else [decode, prefill]
    return {"model": "meta-llama/Llama-3.1-8B", "kv_link": "rdma", "instances": groups}


def _ttft(data: dict) -> float:
    work = open_loop(0.1, 3, LengthDist("fixed", 8192, 0.0), LengthDist("fixed", 4, 0.0), seed=0)
    return simulate(build_deployment(data), work, Slo()).summary()["ttft_ms"]["mean"]


def test_the_transfer_is_in_the_senders_kv_dtype_whichever_group_comes_first():
    """A BF16 prefill beside an FP8 decode group (SGLang, whose preset states no connector rule for it): the KV
    crosses in the prefill's BF16 whether the file lists the prefill or the decode group first (it had followed the
    first group)."""
    assert _ttft(_pair("prefill")) == pytest.approx(_ttft(_pair("decode")), rel=1e-9)


def test_vllms_nixl_connector_refuses_two_kv_dtypes():
    """vLLM's NixlConnector hashes the KV cache dtype into the compatibility hash both sides compare at their
    handshake: a BF16 prefill beside an FP8 decode never connects, a one-line error; the same dtypes run."""
    with pytest.raises(PhasewiseError, match="NixlConnector refuses the pair") as err:
        _ttft(_pair("prefill", engine="vllm"))
    assert "\n" not in str(err.value) and "--kv-dtype" in str(err.value)
    assert _ttft(_pair("prefill", decode_kv=None, engine="vllm")) > 0


def test_deepeps_normal_kernels_send_a_prompt_token_once_per_rank_inside_a_node(run_cli):
    """DeepSeek-V3 on 8 H200s, EP8 beside attention DP8, SGLang with --moe-a2a-backend deepep: a prefill's tokens go
    once to each other rank holding one of their experts (DeepEP's normal kernels: 7 x (1 - (7/8)^8) = 4.59 ranks a
    token under uniform routing, where it had been charged its 7 off-rank expert copies; 3.46 under DeepSeek-V3's
    group-limited routing, 4 of its 8 expert groups, one a rank at EP8: perf/group_routing.py); a decode step's
    low-latency kernels still send every (token, expert) copy. FP8 dispatch with a scale per 128 channels, BF16
    combine."""
    import json

    code, out, err = run_cli("estimate", "--model", DEEPSEEK, "--hardware", "h200-sxm", "--tp", "8", "--ep", "8",
                             "--attention-dp", "8", "--engine", "sglang", "--moe-a2a-backend", "deepep", "--batch",
                             "64", "--prompt-len", "1024", "--json")
    assert code == 0, err
    ops = json.loads(out)["operators"]
    per_token = 7168 * (1 + 4 / 128 + 2)
    prefill = next(op for op in ops["prefill"] if op["name"] == "moe_all_to_all")
    decode = next(op for op in ops["decode"] if op["name"] == "moe_all_to_all")
    tokens = 64 * 1024 / 8  # a rank's prompt tokens
    from phasewise.perf.group_routing import other_ranks_per_token

    other_ranks = other_ranks_per_token(8, 8, 256, 8, 4)
    assert other_ranks == pytest.approx(3.46, abs=0.02)  # at most topk_group = 4 ranks a token, its own among them
    assert prefill["bytes"] / prefill["count"] == pytest.approx(tokens * other_ranks * per_token)
    assert decode["bytes"] / decode["count"] == pytest.approx(64 / 8 * 8 * 7 / 8 * per_token)
