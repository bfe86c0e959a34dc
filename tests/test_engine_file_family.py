"""An engine file that refines a preset (`preset: sglang@0.5.2`, README "runs as the preset does") is launched as
that preset's engine at the file's version (apps/launch_args.py engine_family, launch_version), and the planner reads
the same version (plan/scheduling_variants.py _release_lacking): one reading of an engine's preset and version,
specs/engine_presets.py preset_release. A bare engine file (no `preset:`) keeps vLLM's command. engine_presets.yaml's
knob_since releases are checked when read (knob_since)."""

from __future__ import annotations

import pytest

from phasewise.errors import PhasewiseError

LLAMA = "meta-llama/Llama-3.1-8B"


def _engine_file(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("engines:\n  mine:\n" + "".join(f"    {line}\n" for line in body.splitlines()))
    return str(path)


def _sglang_file(tmp_path) -> str:
    return _engine_file(tmp_path, "my_sglang.yaml", "preset: sglang@0.5.2\niteration_overhead_s: 1.0e-3")


def _script(engine: str, **fields) -> str:
    from phasewise.apps.launch import launch_script
    from phasewise.sim.deployment import build_deployment

    dep = build_deployment({"model": fields.pop("model", LLAMA),
                            "instances": [{"hardware": "h100-sxm", "engine": engine, **fields}]})
    return launch_script(dep, ["header"])[0]


def test_a_file_refining_sglang_is_launched_as_sglang_at_the_file_s_version(tmp_path):
    """The plan simulated SGLang 0.5.2 (mem_fraction_static's meaning of 0.6): the script runs SGLang with
    --mem-fraction-static 0.6, says SGLang 0.5.2 was modelled, and is the script `--engine sglang@0.5.2` gets but
    for a note naming the file (not vLLM's `--gpu-memory-utilization 0.6` as "the nearest")."""
    from phasewise.apps.launch_args import engine_family

    path = _sglang_file(tmp_path)
    assert engine_family(path) == "sglang"
    assert engine_family(path + "@0.5.5") == "sglang"
    script = _script(path, memory_fraction=0.6)
    assert "python -m sglang.launch_server" in script and "--mem-fraction-static 0.6" in script
    assert "vllm serve" not in script and "is the nearest" not in script
    assert "# Engine: SGLang 0.5.2, the version the plan modelled" in script
    assert f"engine file '{path}' refines sglang: launched as SGLang" in script
    preset = _script("sglang@0.5.2", memory_fraction=0.6)
    assert [line for line in script.splitlines() if "engine file" not in line] == preset.splitlines()


def test_a_file_refining_trtllm_is_launched_as_trtllm(tmp_path):
    from phasewise.apps.launch_args import engine_family

    path = _engine_file(tmp_path, "mine.yaml", "preset: trtllm@1.1\niteration_overhead_s: 1.0e-3")
    assert engine_family(path) == "trtllm"
    script = _script(path)
    assert "trtllm-serve " in script and "vllm serve" not in script
    assert "# Engine: TensorRT-LLM 1.1, the version the plan modelled" in script


def test_a_bare_engine_file_keeps_vllm_s_command_whatever_its_name_or_scheduler(tmp_path, monkeypatch):
    """A file with no `preset:` is a host profile under the scheduler it names: still launched as vLLM, the nearest,
    as before; its file name does not choose the engine (a relative `sglang_tuned.yaml` neither)."""
    from phasewise.apps.launch_args import engine_family

    constants = "iteration_overhead_s: 1.0e-3\nper_sequence_overhead_s: 1.0e-5\neager_launch_s: 1.0e-5"
    sarathi = _engine_file(tmp_path, "bare.yaml", "scheduler: sarathi\n" + constants)
    _engine_file(tmp_path, "sglang_tuned.yaml", "scheduler: sglang\n" + constants)
    monkeypatch.chdir(tmp_path)
    for path in (sarathi, "sglang_tuned.yaml", str(tmp_path / "sglang_tuned.yaml")):
        assert engine_family(path) == "vllm"
    script = _script(sarathi)
    assert "vllm serve " in script
    assert f"planned engine '{sarathi}' (simulated scheduler) has no launch command of its own; vllm is the nearest" \
        in script
    assert "# Engine: vLLM 0.14, the version the plan modelled" in script


def test_preset_release_reads_an_engine_file_as_resolve_engine_does(tmp_path):
    """(preset, version) of each --engine form, the version the simulation resolves (resolve_engine)."""
    from phasewise.specs import load_hardware
    from phasewise.specs.engine_presets import preset_release
    from phasewise.specs.engines import resolve_engine

    path = _sglang_file(tmp_path)
    unversioned = _engine_file(tmp_path, "plain.yaml", "preset: sglang\niteration_overhead_s: 1.0e-3")
    hw = load_hardware("h100-sxm")
    cases = {path: ("sglang", "0.5.2"), path + "@0.5.5": ("sglang", "0.5.5"), unversioned: ("sglang", "0.5.5"),
             "sglang": ("sglang", "0.5.5"), "SGLang@0.5.2": ("sglang", "0.5.2"), "vllm@0.11": ("vllm", "0.11"),
             "trtllm-0.5": ("trtllm-0.5", "0.5")}
    for engine, expected in cases.items():
        assert preset_release(engine) == expected, engine
        assert resolve_engine(engine, hw).version == expected[1], engine


def test_the_launch_and_the_planner_read_the_file_s_version(tmp_path):
    """launch_version and the planner's delayer gate both read 0.5.2 from the file (before: the launch the preset's
    default, the planner the --engine string's missing version, so SGLang 0.5.5)."""
    from phasewise.apps.launch_args import launch_version
    from phasewise.plan.scheduling_variants import _release_lacking
    from phasewise.sim.deployment import build_deployment

    path = _sglang_file(tmp_path)
    dep = build_deployment({"model": LLAMA, "instances": [{"hardware": "h100-sxm", "engine": path}]})
    assert launch_version(dep, dep.instances[0], "sglang") == "0.5.2"
    lacks = _release_lacking(path, "enable_prefill_delayer")
    assert lacks is not None and "sglang@0.5.2 (the version modelled) has no such argument" in lacks


def test_the_delayer_is_pruned_under_a_file_of_an_older_release(tmp_path, monkeypatch):
    """With 0.5.5 made to stand for the delayer's first release (as tests/test_prefill_delayer.py does), `--engine
    sglang@0.5.5` plans it, and a file on sglang@0.5.2 does not: a pruned line naming 0.5.2 and FILE@0.5.5."""
    from phasewise.plan.options import PlanOptions
    from phasewise.plan.scheduling_variants import scheduling_variants
    from phasewise.specs.engine_presets import preset_entry

    monkeypatch.setitem(preset_entry("sglang")["knob_since"], "enable_prefill_delayer", "0.5.5")
    path = _sglang_file(tmp_path)
    layout = {"attention_dp": 4, "ep": 4}
    for engine, planned in (("sglang@0.5.5", True), (path, False), (path + "@0.5.5", True)):
        pruned: list[str] = []
        variants = scheduling_variants(PlanOptions(engine=engine, chunk_sizes=(2048,)), 128, tp=4, layout=layout,
                                       pruned=pruned)
        assert any("prefill-delayer" in label for label, _ in variants) is planned, engine
        assert bool([line for line in pruned if "prefill-delayer" in line]) is not planned, engine
    pruned = []
    scheduling_variants(PlanOptions(engine=path, chunk_sizes=(2048,)), 128, tp=4, layout=layout, pruned=pruned)
    assert pruned == [f"collocated tp=4 prefill-delayer b128: not planned: --enable-prefill-delayer needs sglang >= "
                      f"0.5.5, and sglang@0.5.2 (the version modelled) has no such argument; --engine {path}@0.5.5 "
                      "plans it"]


@pytest.mark.parametrize("release", [0.6, "0.5.8 ", 5, "soon"])
def test_a_knob_since_release_that_is_no_version_string_is_a_one_line_error(monkeypatch, release):
    """engine_presets.yaml's knob_since read as the preset's versions are: an unquoted 0.6 (a float to YAML) or a
    release with a space is refused, naming the preset and the knob, by the planner's and the launch's reads alike
    (before: an AttributeError, or "SGLang >= 0.5.8 :" in launch.sh)."""
    from phasewise.apps.launch_args import engine_flags
    from phasewise.specs.engine_presets import knob_since, preset_entry

    monkeypatch.setitem(preset_entry("sglang")["knob_since"], "enable_prefill_delayer", release)
    for read in (lambda: knob_since("sglang@0.5.2", "enable_prefill_delayer"), engine_flags):
        with pytest.raises(PhasewiseError) as error:
            read()
        message = str(error.value)
        assert "\n" not in message
        assert "sglang" in message and "knob_since enable_prefill_delayer" in message
        assert "quoted version string" in message and repr(release) in message


def test_the_shipped_knob_since_releases_read():
    from phasewise.specs.engine_presets import knob_since, preset_entry, preset_names

    for name in preset_names():
        for knob, release in (preset_entry(name).get("knob_since") or {}).items():
            assert knob_since(name, knob) == release


def test_a_file_refining_trtllm_bench_runs_long_prompts_whole_and_starts_as_it(tmp_path):
    """An engine file refining a preset ran as it in the scheduler and the memory fit but not where the code asked
    for the preset by name: a file refining trtllm-bench refused a prompt over its token budget (trtllm-serve's 400,
    which trtllm-bench's entry point does not give) and started with startup.yaml's default constants."""
    from phasewise.perf import startup
    from phasewise.sim.schedulers.trtllm import TrtllmScheduler
    from phasewise.specs import load_hardware
    from phasewise.specs.engines import resolve_engine

    path = tmp_path / "bench.yaml"
    path.write_text("engines:\n  mine:\n    preset: trtllm-bench\n    iteration_overhead_s: 1.0e-3\n")
    hw = load_hardware("h100-sxm")
    from_file, preset = resolve_engine(str(path), hw), resolve_engine("trtllm-bench", hw)
    long_prompt = from_file.token_budget + 1
    assert TrtllmScheduler(from_file).refusal(long_prompt) is None
    assert TrtllmScheduler(preset).refusal(long_prompt) is None
    assert startup._constants(from_file) == startup._constants(preset)
    from phasewise.sim.schedulers.trtllm import runs_long_prompts  # the one rule launch_caps reads too

    assert runs_long_prompts(str(path)) and runs_long_prompts("trtllm-bench") and not runs_long_prompts("trtllm")
