"""plan and sweep take one set of strategy options through one check (plan/options.py check_options): an option
that applies to no strategy of the plan or no cell of the sweep is a one-line error naming plan's flag or sweep's
key, never taken and ignored; --host-kv-cache-gb / --kv-store-gb where no engine tried caches prefixes likewise (and
where some do, the plan names the ranked strategies that run without them); a list naming a model, chip or engine
twice is refused, not run twice."""

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan import PlanOptions

M = "meta-llama/Llama-3.1-8B"
MOE = "Qwen/Qwen3-30B-A3B"
BASE = ("models: [{models}]\nhardware: [{hardware}]\ngpus: 1\nworkloads: [{{name: short, isl: 512, osl: 64}}]\n"
        "slo: {{ttft_ms: 1000, tpot_ms: 50}}\n"
        "strategies: {{tp_options: [1], chunk_sizes: [512], batch_caps: [256], disaggregated: false{extra}}}\n")


def sweep(run_cli, tmp_path, extra: str = "", models: str = M, hardware: str = "h100-sxm"):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(BASE.format(models=models, hardware=hardware, extra=extra))
    return run_cli("sweep", str(cfg), "--out", str(tmp_path / "s.csv"), "--workers", "1")


# (sweep's strategies entry, plan's flags, what both say: plan's flag or sweep's key around it)
NOT_APPLYING = [
    ("kv_link: pcie", ["--no-disagg", "--kv-link", "pcie"],
     "{kv_link} shapes disaggregated strategies, which {no_disagg} leaves out"),
    ("prefill_hardware: [h200-sxm]", ["--no-disagg", "--prefill-hardware", "h200-sxm"],
     "{prefill_hardware} shapes disaggregated strategies, which {no_disagg} leaves out"),
    ("decode_hardware: [h200-sxm]", ["--no-disagg", "--decode-hardware", "h200-sxm"],
     "{decode_hardware} shapes disaggregated strategies, which {no_disagg} leaves out"),
    ("policies: [attention-offload]", ["--no-disagg", "--policies", "attention-offload"],
     "{offload} shapes disaggregated strategies, which {no_disagg} leaves out"),
    ("spec_tokens: 3", ["--no-disagg", "--spec-tokens", "3"], "{spec_tokens} needs {spec}"),
    ("spec_acceptance: 0.5", ["--no-disagg", "--spec-acceptance", "0.5"], "{spec_acceptance} needs {spec}"),
    ("moe_layouts: [ep]", ["--no-disagg", "--moe-layouts", "ep"],
     "{moe_layouts} applies to mixture-of-experts models; meta-llama/Llama-3.1-8B is dense"),
    ("engine: vllm-v0, host_kv_cache_bytes: 1.0e10", ["--no-disagg", "--engine", "vllm-v0", "--host-kv-cache-gb", "10"],
     "{host} holds prefix blocks evicted from the GPU: it needs prefix caching and a host-memory KV tier, which no "
     "strategy here keeps (prefix caching is off on vllm-v0@0.6 by default for meta-llama/Llama-3.1-8B)"),
    ("engine: vllm-v0, kv_store_bytes: 1.0e10", ["--no-disagg", "--engine", "vllm-v0", "--kv-store-gb", "10"],
     "{store} holds prefix blocks evicted from the GPU: it needs prefix caching"),
]
PLAN_NAMES = dict(kv_link="--kv-link", no_disagg="--no-disagg", prefill_hardware="--prefill-hardware",
                  decode_hardware="--decode-hardware", offload="--policies attention-offload",
                  spec_tokens="--spec-tokens", spec_acceptance="--spec-acceptance", spec="--spec",
                  moe_layouts="--moe-layouts", host="--host-kv-cache-gb", store="--kv-store-gb")
SWEEP_NAMES = dict(kv_link="strategies.kv_link", no_disagg="strategies.disaggregated: false",
                   prefill_hardware="strategies.prefill_hardware", decode_hardware="strategies.decode_hardware",
                   offload="strategies.policies: attention-offload", spec_tokens="strategies.spec_tokens",
                   spec_acceptance="strategies.spec_acceptance", spec="strategies.speculative: [false, true]",
                   moe_layouts="strategies.moe_layouts", host="strategies.host_kv_cache_bytes",
                   store="strategies.kv_store_bytes")


@pytest.mark.parametrize("entry, flags, message", NOT_APPLYING, ids=[case[0] for case in NOT_APPLYING])
def test_sweep_refuses_what_plan_refuses(run_cli, tmp_path, entry, flags, message):
    """Each of these gave a CSV identical to the sweep without it; plan refused the same as flags."""
    code, _, err = sweep(run_cli, tmp_path, ", " + entry)
    assert code == 2 and message.format(**SWEEP_NAMES) in err and "sweep.yaml'" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("entry, flags, message", NOT_APPLYING, ids=[case[0] for case in NOT_APPLYING])
def test_plan_refuses_them_by_flag(run_cli, entry, flags, message):
    code, _, err = run_cli("plan", "--gpus", "1", "--tp-options", "1", "--isl", "512", "--osl", "64", *flags)
    assert code == 2 and message.format(**PLAN_NAMES) in err and len(err.strip().splitlines()) == 1, err


def test_options_that_apply_somewhere_are_taken():
    """A grid with a MoE model among dense ones takes moe_layouts; kv_link beside priority pools (their KV moves
    over it); spec options with speculative decoding tried; a host tier where one engine of several caches."""
    from phasewise.plan.options import check_options
    from phasewise.plan.sweep import sweep_key

    check_options([M, MOE], ["h100-sxm"], PlanOptions(moe_layouts=("ep",)), {"moe_layouts"}, sweep_key)
    check_options([M], ["h100-sxm"], PlanOptions(disaggregated=False, policies=("priority-pools",), kv_link="pcie"),
                  {"kv_link", "policies"}, sweep_key)
    check_options([M, "XiaomiMiMo/MiMo-7B-Base"], ["h100-sxm"], PlanOptions(speculative=(False, True), spec_tokens=2),
                  {"spec_tokens"}, sweep_key)
    check_options([M], ["h100-sxm"], PlanOptions(engine="vllm-v0,vllm", host_kv_cache_bytes=1e10),
                  {"engine", "host_kv_cache_bytes"}, sweep_key)
    with pytest.raises(PhasewiseError, match="dense"):
        check_options([M], ["h100-sxm"], PlanOptions(moe_layouts=("ep",)), {"moe_layouts"}, sweep_key)


def test_plan_names_the_strategies_that_run_without_the_host_tier(run_cli):
    """vLLM V1 caches prefixes by default, V0 (the plan's prefill-first baseline) does not: the ranked prefill-first
    strategy runs without --host-kv-cache-gb, and the plan says so (it used to drop it there silently)."""
    code, out, err = run_cli("plan", "--gpus", "1", "--tp-options", "1", "--no-disagg", "--isl", "512", "--osl", "64",
                             "--chunk-sizes", "512", "--batch-caps", "256", "--host-kv-cache-gb", "10", "--json",
                             "--workers", "1")
    assert code == 0, err
    result = json.loads(out)
    without = [f"#{row['rank']}" for row in result["rows"]
               if not any(g.get("host_kv_cache_bytes") for g in row["deployment"]["instances"])]
    assert without and all("prefill-first" in result["rows"][int(rank[1:]) - 1]["strategy"] for rank in without)
    assert result["without_host_tier"].startswith(f"{', '.join(without)} run without --host-kv-cache-gb: ")
    assert len(without) < len(result["rows"])  # the others keep it


@pytest.mark.parametrize("models, hardware, extra, message", [
    (f"{M}, {M}", "h100-sxm", "", f"models names {M} twice"),
    (M, "h100-sxm, h100-sxm", "", "hardware names h100-sxm twice"),
    (M, "h100-sxm, H100-SXM", "", "hardware names one chip twice: h100-sxm and H100-SXM"),
    (M, "h100-sxm", ", decode_hardware: [h200-sxm, h200-sxm]",
     "strategies.decode_hardware names h200-sxm twice"),
    (M, "h100-sxm", ", routers: [round_robin, round_robin]", "strategies.routers names round_robin twice"),
    (M, "h100-sxm", ", engine: 'vllm,vllm'", "strategies.engine 'vllm,vllm' names vllm twice"),
])
def test_sweep_refuses_a_list_naming_one_entry_twice(run_cli, tmp_path, models, hardware, extra, message):
    """models: [X, X] or hardware: [h100-sxm, h100-sxm] gave every row twice."""
    code, _, err = sweep(run_cli, tmp_path, extra, models, hardware)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_dllm_plan_refuses_a_chip_named_twice(run_cli):
    """plan --dllm --hardware h100-sxm,h100-sxm printed every ranking row twice."""
    for hardware, message in (("h100-sxm,h100-sxm", "--hardware 'h100-sxm,h100-sxm' names h100-sxm twice"),
                              ("h100-sxm,H100-SXM", "--hardware names one chip twice: h100-sxm and H100-SXM")):
        code, _, err = run_cli("plan", "--model", "GSAI-ML/LLaDA-8B-Instruct", "--dllm", "fast-dllm",
                               "--hardware", hardware, "--gpus", "1", "--batch-caps", "1")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
