"""What the engines themselves refuse or change, as the planner and a deployment see it: vLLM's NixlConnector and a
prefill TP above the decode's, an MTP draft on a model without MTP layers, SGLang's overlap scheduler under
speculative decoding, and the link a disaggregated deployment's KV crosses once it leaves one node."""

from __future__ import annotations

import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan.options import PlanOptions
from phasewise.plan.strategies import enumerate_strategies
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_hardware
from phasewise.specs.engines import resolve_engine

LLAMA_70B, LLAMA_8B = "meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.1-8B"


def _disagg(model: str, hardware: str, gpus: int, **opts) -> dict:
    strategies, pruned = enumerate_strategies(model, hardware, gpus, PlanOptions(**opts))
    return {s.name: s for s in strategies if s.kind == "disaggregated"}, pruned


def _pair(p_tp: int, d_tp: int, engine: str = "vllm", model: str = LLAMA_70B) -> dict:
    return {"model": model, "instances": [{"role": "prefill", "tp": p_tp, "hardware": "h200-sxm", "engine": engine},
                                          {"role": "decode", "tp": d_tp, "hardware": "h200-sxm", "engine": engine}]}


# --- vLLM's NixlConnector: prefill TP above the decode's --------------------------------------------------------

def test_vllm_before_0_14_is_not_planned_with_a_prefill_tp_above_the_decodes():
    """`plan --tp-options 2,4 --gpus 6` on Llama-3.1-70B won with 1P(TP4) 1D(TP2); the 0.11-era NixlConnector
    asserts "Decode TP cannot be smaller than prefill TP" at the handshake. The pair is pruned, with the reason."""
    old, pruned = _disagg(LLAMA_70B, "h200-sxm", 6, tp_options=(2, 4), engine="vllm@0.11")
    assert "1P(TP4) 1D(TP2) bf16" not in old and "1P(TP2) 1D(TP4) bf16" in old
    assert any("P-TP4/D-TP2" in line and "Decode TP cannot be smaller than prefill TP" in line for line in pruned)
    # 0.14 reads from several prefill workers (PR #27274): the pair stays, Llama-70B's 8 KV heads split over 4 GPUs
    new, _ = _disagg(LLAMA_70B, "h200-sxm", 6, tp_options=(2, 4))
    assert "1P(TP4) 1D(TP2) bf16" in new


def test_vllm_0_14_refuses_a_larger_prefill_tp_whose_kv_is_replicated():
    """P TP >= the model's KV heads replicates the prefill's KV; 0.14's handshake asserts that case away."""
    from phasewise.specs.engine_refusals import disagg_tp_refusal

    found, pruned = _disagg(LLAMA_70B, "h200-sxm", 16, tp_options=(4, 8))
    assert not any(name.startswith(("1P(TP8) 1D(TP4)", "1P(TP8) 2D(TP4)")) for name in found)
    assert any(name.startswith("1P(TP4) 1D(TP8)") for name in found)
    assert any("P-TP8/D-TP4" in line and "KV replicated" in line for line in pruned)
    assert disagg_tp_refusal("vllm", 8, 4, kv_heads=128) is None  # DeepSeek's MLA: 128 heads as vLLM counts them
    assert disagg_tp_refusal("sglang", 8, 4, kv_heads=8) is None  # a preset without the rule


@pytest.mark.parametrize("engine, p_tp, d_tp, words", [
    ("vllm@0.11", 4, 2, "Decode TP cannot be smaller than prefill TP"),
    ("vllm@0.12", 4, 2, "supported from vllm@0.14"),
    ("vllm", 8, 4, "Num kv_heads > tp_size and P TP > D TP case, not supported"),
])
def test_a_deployment_the_connector_refuses_is_a_one_line_error(engine, p_tp, d_tp, words):
    with pytest.raises(PhasewiseError, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
        build_deployment(_pair(p_tp, d_tp, engine))
    assert "\n" not in str(err.value) and f"tp={p_tp}" in str(err.value)


def test_the_connector_compares_each_attention_dp_ranks_tp():
    """A decode instance of 8 GPUs in 8 attention-DP ranks is vLLM's --data-parallel-size 8 with TP1 engines: beside
    a TP8 prefill that is P TP > D TP, which only 0.14 runs (DeepSeek's MLA: 128 KV heads as vLLM counts them)."""
    dsr1 = {"model": "deepseek-ai/DeepSeek-R1", "instances": [
        {"role": "prefill", "tp": 8, "ep": 8, "hardware": "h200-sxm"},
        {"role": "decode", "tp": 8, "ep": 8, "attention_dp": 8, "hardware": "h200-sxm"}]}
    build_deployment(dsr1)
    old = dict(dsr1, instances=[dict(g, engine="vllm@0.11") for g in dsr1["instances"]])
    with pytest.raises(PhasewiseError, match="prefill TP8 above decode TP1"):
        build_deployment(old)


def test_a_decode_tp_at_or_above_the_prefills_still_builds():
    for engine in ("vllm@0.11", "vllm"):
        build_deployment(_pair(2, 4, engine))
        build_deployment(_pair(4, 4, engine))
    build_deployment(_pair(4, 2))  # vllm@0.14, TP4 < 8 KV heads


# --- an MTP draft needs MTP layers ----------------------------------------------------------------------------

def test_plan_spec_on_a_model_without_mtp_layers_is_refused_in_one_line():
    """--spec planned MTP drafting for Llama-3.1-8B, which has no MTP layers to draft with: the options check
    refuses it in one line where no model listed has them; the enumeration then plans it without +spec."""
    from phasewise.apps.cli_plan import plan_flag
    from phasewise.plan.options import check_options

    with pytest.raises(PhasewiseError, match="--spec") as err:
        check_options([LLAMA_8B], ["h100-sxm"], PlanOptions(speculative=(False, True)), set(), plan_flag)
    assert "\n" not in str(err.value) and "--spec-draft" in str(err.value) and LLAMA_8B in str(err.value)
    plain, _ = enumerate_strategies(LLAMA_8B, "h100-sxm", 8, PlanOptions(speculative=(False, True)))
    assert plain and not any(s.details.get("speculative") for s in plain)
    strategies, _ = enumerate_strategies("XiaomiMiMo/MiMo-7B-Base", "h100-sxm", 2,
                                         PlanOptions(speculative=(False, True), tp_options=(1,)))
    assert any(s.details.get("speculative") for s in strategies)  # its one MTP layer (num_nextn_predict_layers)


@pytest.mark.parametrize("model, draft, refused", [
    (LLAMA_8B, "mtp", True),
    (LLAMA_8B, None, True),  # the default draft is mtp
    ("Qwen/Qwen3-8B", "Qwen/Qwen3-0.6B", False),  # a draft model of its family
    ("deepseek-ai/DeepSeek-R1", "mtp", False),  # num_nextn_predict_layers 1
    ("Qwen/Qwen3.5-27B", "mtp", False),  # text_config.mtp_num_hidden_layers 1
    ("XiaomiMiMo/MiMo-V2-Flash", "mtp", False),  # three MTP modules its catalog config leaves out
])
def test_a_deployments_mtp_draft_needs_mtp_layers(model, draft, refused):
    spec = {"draft_tokens": 3, "acceptance": 0.7, **({"draft": draft} if draft else {})}
    data = {"model": model, "instances": [{"hardware": "h200-sxm", "tp": 8}], "speculative": spec}
    if not refused:
        build_deployment(data)
        return
    with pytest.raises(PhasewiseError, match="multi-token-prediction layers, and .* has none") as err:
        build_deployment(data)
    assert "\n" not in str(err.value) and "--spec-draft MODEL" in str(err.value)


def test_simulate_spec_tokens_on_llama_names_spec_draft():
    from phasewise.sim.api import run

    with pytest.raises(PhasewiseError, match="--spec-draft"):
        run(model=LLAMA_8B, rate=1, requests=2, isl=64, osl=4, spec_tokens=3)


# --- SGLang 0.5.x without its overlap scheduler under speculative decoding ------------------------------------

@pytest.mark.parametrize("engine", ["sglang", "sglang@0.5.2"])
def test_sglang_speculative_decoding_turns_its_overlap_scheduler_off(engine):
    """srt/server_args.py _handle_speculative_decoding (0.5.x): disable_overlap_schedule for EAGLE / NEXTN /
    STANDALONE unless SGLANG_ENABLE_SPEC_V2 (off by default), mixed chunk off, max_running_requests 48 if unset."""
    hw = load_hardware("h100-sxm")
    plain = resolve_engine(engine, hw)
    assert plain.profile.overlap_scheduling is True and plain.max_seqs > 48
    for draft in ("mtp", "Qwen/Qwen3-0.6B"):
        with pytest.raises(PhasewiseError, match="--enable-mixed-chunk"):
            resolve_engine(engine, hw, {"enable_mixed_chunk": True}, speculative_draft=draft)
        spec = resolve_engine(engine, hw, speculative_draft=draft)
        assert spec.profile.overlap_scheduling is False
        assert spec.max_seqs == 48 and spec.mixed_batches is False
    asked = resolve_engine(engine, hw, {"max_running_requests": 128}, speculative_draft="mtp")
    assert asked.max_seqs == 128 and asked.profile.overlap_scheduling is False
    # the other engines keep theirs (vLLM 0.14's async scheduling runs beside EAGLE-family drafts)
    assert resolve_engine("vllm", hw, speculative_draft="mtp").profile.overlap_scheduling is True
    assert resolve_engine("trtllm", hw, speculative_draft="mtp").profile.overlap_scheduling is True


# --- KV transfer between nodes ---------------------------------------------------------------------------------

def test_kv_crosses_rdma_once_the_deployment_leaves_one_node():
    """The export places prefill then decode instances in order, 8 GPUs a node: a 16-GPU disaggregated deployment
    sends KV between nodes, where only RDMA runs; within one node NVLink stays."""
    one_node, pruned = _disagg(LLAMA_8B, "h100-sxm", 8, tp_options=(1, 2))
    assert one_node and all(s.deployment["kv_link"] == s.unit["kv_link"] == "nvlink" for s in one_node.values())
    assert not any("costed over rdma" in line for line in pruned)
    two_nodes, pruned = _disagg(LLAMA_8B, "h100-sxm", 16, tp_options=(2, 4))
    assert two_nodes and all(s.deployment["kv_link"] == s.unit["kv_link"] == "rdma" for s in two_nodes.values())
    assert sum("beyond one 8-GPU node of h100-sxm: KV transfers costed over rdma" in line for line in pruned) == 1
    # an NVL72 rack is one NVLink domain of 72 GPUs
    rack, _ = _disagg(LLAMA_8B, "gb200", 16, tp_options=(2, 4))
    assert rack and all(s.deployment["kv_link"] == "nvlink" for s in rack.values())


def test_kv_between_two_chips_crosses_rdma():
    found, pruned = _disagg(LLAMA_8B, "h100-sxm", 4, tp_options=(1, 2), prefill_hardware=("h200-sxm",),
                            decode_hardware=("h100-sxm",))
    assert found and all(s.deployment["kv_link"] == "rdma" for s in found.values())
    assert any("prefill on h200-sxm and decode on h100-sxm" in line for line in pruned)
