"""Review fixes (second round) to `plan --export`'s launch scripts and the plan's scheduling variants: TensorRT-LLM
commands run the simulated token budget and chunk where the simulated preset ran prompts past it (trtllm-0.5, whose
budget variants are named 'budget N', not 'chunked N'); a preset simulated without prefix caching is launched with
it off; vLLM's multi-node MP-executor flags say they need 0.11.1; SGLang 0.5.5 plans do not rank the 0.5.8 prefill
delayer."""

import pytest
import yaml

from phasewise.apps.launch import launch_script
from phasewise.apps.launch_args import engine_flags
from phasewise.plan.options import PlanOptions
from phasewise.plan.scheduling_variants import scheduling_variants
from phasewise.sim.deployment import build_deployment

LLAMA = "meta-llama/Llama-3.1-8B"


def _script(engine: str, longest_prompt: int | None = None, model: str = LLAMA, tp: int = 1, **fields):
    """(launch.sh, its config files) of one collocated instance of `engine` on an H100, the workload's prompts at
    most `longest_prompt` tokens (128 output tokens each)."""
    dep = build_deployment({"model": model, "instances": [{"role": "collocated", "hardware": "h100-sxm",
                                                           "engine": engine, "tp": tp, **fields}]})
    if longest_prompt is None:
        return launch_script(dep, [])
    return launch_script(dep, [], longest_prompt + 128, longest_prompt)


def _options(files: dict[str, str]) -> dict:
    (text,) = [t for name, t in files.items() if name.startswith("extra-llm-api-")]
    return yaml.safe_load(text)


def test_a_trtllm_0_5_budget_below_the_prompts_launches_with_chunked_prefill_and_says_what_differs():
    """Finding 1: trtllm-0.5 at max_num_tokens 512 ran the 1,024-token prompts whole (RUNS_LONG_PROMPTS); trtllm-serve
    refuses them without chunked prefill, so the options YAML turns it on at the simulated budget and the header
    says so. The old script wrote --max_num_tokens 512 with chunking off: every request refused."""
    script, files = _script("trtllm-0.5", 1024, max_batch_size=64, max_num_tokens=512)
    assert "--max_batch_size 64 --max_num_tokens 512" in script
    assert _options(files)["enable_chunked_prefill"] is True
    header = script.split("set -euo pipefail")[0]
    assert "# Not as simulated: TensorRT-LLM enable_chunked_prefill true" in header
    assert "512-token budget" in header and "1,024 tokens" in header


def test_a_trtllm_0_5_default_writes_its_simulated_16k_budget_which_holds_the_prompts():
    """Finding 1: the default strategy simulated trtllm-0.5's 16,384-token budget; without --max_num_tokens trtllm-serve
    runs its own 8,192 and refuses 12,000-token prompts. Written always; prompts within it need no chunking."""
    assert "--max_batch_size 2048 --max_num_tokens 16384" in _script("trtllm-0.5")[0]
    script, files = _script("trtllm-0.5", 12000)
    assert "--max_batch_size 2048 --max_num_tokens 16384" in script
    assert "enable_chunked_prefill" not in _options(files) and "Not as simulated" not in script


def test_trtllm_chunks_only_where_a_prompt_may_pass_the_budget():
    """Prompts within the budget: no chunking, nothing differs; the prompts not known: the model's context (131,072
    tokens) passes 16,384, so chunking on, said; trtllm-serve's own preset (prompts beyond its budget refused in the
    simulation too) is left as simulated."""
    script, files = _script("trtllm-0.5", 1024, max_batch_size=64, max_num_tokens=2048)
    assert "enable_chunked_prefill" not in _options(files) and "Not as simulated" not in script
    script, files = _script("trtllm-0.5")
    assert _options(files)["enable_chunked_prefill"] is True and "is not known here" in script
    script, files = _script("trtllm", 12000)
    assert "--max_num_tokens 8192" in script and "enable_chunked_prefill" not in _options(files)


def test_trtllm_0_5_budget_variants_are_named_budget_not_chunked():
    """Finding 1: trtllm-0.5 has no chunked prefill (no enable_chunked_prefill knob; its table false), so its
    --chunk-sizes variants keep prompts whole: 'budget 512'; TensorRT-LLM 1.x's turn chunking on: 'chunked 512'."""
    old = dict(scheduling_variants(PlanOptions(engine="trtllm-0.5", chunk_sizes=(512,)), 64))
    assert "budget 512" in old and "chunked 512" not in old
    assert "enable_chunked_prefill" not in old["budget 512"]
    new = dict(scheduling_variants(PlanOptions(engine="trtllm", chunk_sizes=(512,)), 64))
    assert new["chunked 512"]["enable_chunked_prefill"] is True


@pytest.mark.parametrize("engine, off", [("vllm-v0", "--no-enable-prefix-caching"),
                                         ("sarathi", "--no-enable-prefix-caching"),
                                         ("trtllm-0.5", "enable_block_reuse: false")])
def test_a_preset_simulated_without_prefix_caching_is_launched_with_it_off(engine, off):
    """Finding 2: vllm-v0, sarathi and trtllm-0.5 simulate no prefix cache; vLLM 0.14 and trtllm-serve cache by
    default, so the command turns it off (the old one wrote nothing)."""
    script, files = _script(engine)
    assert off in script + "".join(files.values())


@pytest.mark.parametrize("engine", ["vllm", "trtllm", "sglang"])
def test_an_engine_launched_as_simulated_gets_no_prefix_caching_switch(engine):
    """The engines' own presets cache prefixes as their launch does: nothing written."""
    script, files = _script(engine)
    text = script + "".join(files.values())
    assert not any(s in text for s in ("prefix-caching", "enable_block_reuse", "radix-cache"))


@pytest.mark.parametrize("engine, needs", [("vllm@0.8.5", True), ("vllm@0.10", True), ("vllm@0.11", True),
                                           ("vllm", False)])
def test_vllm_multi_node_tensor_parallel_flags_say_they_need_0_11_1(engine, needs):
    """Finding 3: --nnodes / --node-rank / --master-addr / --master-port are not in vLLM 0.11.0's arg_utils.py, in
    0.11.1's: a TP16 instance over two nodes under an older modelled version says so, at its commands and header."""
    script, _ = _script(engine, model="meta-llama/Llama-3.1-405B", tp=16, max_num_seqs=64)
    assert "--nnodes 2" in script
    header, body = script.split("set -euo pipefail")
    said = f" vLLM >= 0.11.1: vLLM {engine.partition('@')[2]} (the version the plan modelled)"

    def says(text: str, flag: str) -> bool:  # a line of its own or one naming the flags of a release together
        return any(said in line and flag in line.split(" need")[0] for line in text.splitlines())

    assert says(header, "--nnodes") == needs and says(body, "--nnodes") == needs
    assert says(header, "--master-addr") == needs


def test_an_sglang_0_5_5_plan_does_not_rank_the_0_5_8_prefill_delayer():
    """Finding 4: SGLang 0.5.5 (the plan's default) has no --enable-prefill-delayer (0.5.8 on): the variant is not
    planned under it, and a pruned line names the release it needs."""
    pruned: list[str] = []
    variants = scheduling_variants(PlanOptions(engine="sglang", chunk_sizes=(2048,)), 128, tp=4,
                                   layout={"attention_dp": 4, "ep": 4}, pruned=pruned)
    assert variants and not [label for label, _ in variants if "prefill-delayer" in label]
    assert any("--enable-prefill-delayer needs sglang >= 0.5.8" in line and "sglang@0.5.5" in line
               for line in pruned)


def test_the_planner_and_the_launch_script_read_one_release_for_a_knob_s_flag(monkeypatch):
    """The release of --enable-prefill-delayer lives once, in the sglang preset's knob_since (specs/data/
    engine_presets.yaml): moving it there moves both the plan's variant (planned or pruned, the pruned line naming
    it) and launch.sh's `needs` line (apps/data/engine_flags.yaml refers to it)."""
    from phasewise.apps.launch_args import version_needs
    from phasewise.specs.engine_presets import preset_entry

    def planned(pruned: list[str]) -> bool:
        variants = scheduling_variants(PlanOptions(engine="sglang", chunk_sizes=(2048,)), 128, tp=4,
                                       layout={"attention_dp": 4, "ep": 4}, pruned=pruned)
        return any("prefill-delayer" in label for label, _ in variants)

    since = preset_entry("sglang")["knob_since"]
    assert engine_flags()["sglang"]["flags"]["--enable-prefill-delayer"]["since"] == since["enable_prefill_delayer"]
    for release, on_0_5_5 in (("0.5.5", True), ("0.5.6", False), ("0.5.8", False)):
        monkeypatch.setitem(since, "enable_prefill_delayer", release)
        pruned: list[str] = []
        assert planned(pruned) == on_0_5_5
        assert engine_flags()["sglang"]["flags"]["--enable-prefill-delayer"]["since"] == release
        needs = version_needs("sglang", ["--enable-prefill-delayer"], "0.5.5")
        assert bool(needs) == (not on_0_5_5)
        if not on_0_5_5:
            assert any(f"--enable-prefill-delayer needs sglang >= {release}" in line for line in pruned)
            assert needs[0].startswith(f"--enable-prefill-delayer needs SGLang >= {release}: SGLang 0.5.5")


def test_a_flag_whose_knob_has_a_release_does_not_write_its_own():
    """apps/data/engine_flags.yaml writes no release of its own for a flag whose knob's release the engine's preset
    records (knob_since): it refers to that one (`since: {knob: K}`), and every such reference names a release."""
    from importlib import resources

    from phasewise.specs.engine_presets import preset_entry

    raw = yaml.safe_load(resources.files("phasewise.apps").joinpath("data", "engine_flags.yaml").read_text())
    referred = 0
    for family, spec in raw.items():
        for knob in preset_entry(family).get("knob_since") or {}:
            entry = spec["flags"][f"--{knob.replace('_', '-')}"]
            assert entry["since"] == {"knob": knob}, (family, knob)
            referred += 1
        for flag, entry in spec["flags"].items():
            if isinstance(entry.get("since"), dict):
                release = preset_entry(family)["knob_since"][entry["since"]["knob"]]
                assert engine_flags()[family]["flags"][flag]["since"] == release
    assert referred >= 2  # the prefill delayer's two flags
