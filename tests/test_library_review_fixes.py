"""The library review's fixes: phasewise used from Python (sim.api run/build, simulate, perf.estimate, plan, Workload,
scenarios) as the CLI is used: caches that see an edited file, arguments refused as the flags refuse them, results
that own their arrays, and what simulate prints beside its figures on run()'s result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf import estimate
from phasewise.plan import PlanOptions, plan
from phasewise.plan.goodput import workload_spec
from phasewise.scenarios import get_scenario
from phasewise.sim import Slo, simulate
from phasewise.sim.api import build, run
from phasewise.sim.deployment import build_deployment
from phasewise.sim.encode_pool import encoder_cost
from phasewise.specs.catalog import packaged
from phasewise.workload import Workload

LLAMA = "meta-llama/Llama-3.1-8B"
SMALL = dict(rate=8, requests=20, isl=512, osl=32)


def _hardware_file(path, bandwidth: float):
    entry = dict(packaged("hardware_specs.yaml")["hardware"]["h100-sxm"], memory_bandwidth_bytes_per_s=bandwidth)
    path.write_text(yaml.safe_dump({"hardware": {"mine": entry}}))
    return str(path)


def _model_file(path, layers: int):
    config = dict(packaged("models.yaml")["models"][LLAMA]["config"], num_hidden_layers=layers)
    path.write_text(json.dumps(config))
    return str(path)


def test_run_reads_a_hardware_file_edited_between_two_runs_in_one_process(tmp_path):
    """sim/simulate.py _build_group was cached on the path's string: a chip file's bandwidth cut from 3.35 to 0.15
    TB/s left the second run's TPOT the first's. Keyed on the file's stamp, the second run reads the edit."""
    chip = _hardware_file(tmp_path / "chip.yaml", 3.35e12)
    fast = run(hardware=chip, **SMALL).summary()["tpot_ms"]["mean"]
    _hardware_file(tmp_path / "chip.yaml", 1.5e11)
    slow = run(hardware=chip, **SMALL).summary()["tpot_ms"]["mean"]
    assert slow > 5 * fast


def test_run_and_the_encoder_and_fit_caches_read_an_edited_model_file(tmp_path):
    """A model config with twice the layers, written over the first: the simulation, perf/fit.py's cached specs and
    the spec stamps see it (the encode pool's cost model keys on its chip file likewise)."""
    from phasewise.perf.fit import _specs
    from phasewise.specs.reading import spec_file_stamps

    model = _model_file(tmp_path / "config.json", 32)
    before = run(model=model, **SMALL).summary()["tpot_ms"]["mean"]
    assert _specs(model, "h100-sxm", "bf16")[0].num_layers == 32
    stamp = spec_file_stamps(model, "h100-sxm")
    _model_file(tmp_path / "config.json", 128)
    assert spec_file_stamps(model, "h100-sxm") != stamp and stamp[1] is None  # a catalog name has no stamp
    assert _specs(model, "h100-sxm", "bf16")[0].num_layers == 128
    after = run(model=model, **SMALL).summary()["tpot_ms"]["mean"]
    assert after > 2 * before

    chip = _hardware_file(tmp_path / "enc.yaml", 3.35e12)
    dep = lambda: build_deployment({"model": "Qwen/Qwen2.5-VL-7B-Instruct",  # noqa: E731
                                    "instances": [{"role": "collocated", "hardware": "h100-sxm"}],
                                    "encoders": {"replicas": 1, "hardware": chip}})
    assert encoder_cost(dep()).hw.memory_bandwidth_bytes_per_s == 3.35e12
    _hardware_file(tmp_path / "enc.yaml", 1.5e11)
    assert encoder_cost(dep()).hw.memory_bandwidth_bytes_per_s == 1.5e11


def test_run_refuses_any_deployment_argument_beside_a_deployment_file_even_at_its_default(tmp_path):
    """run(deployment=FILE, tp=1) ran the file's TP-2 SGLang group on H200s, the 1 ignored (deployment_from_flags
    compares values with the defaults); simulate refuses --tp 1 typed beside --deployment. None is not given."""
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump({"model": LLAMA, "instances": [
        {"role": "collocated", "hardware": "h200-sxm", "tp": 2, "replicas": 1, "engine": "sglang"}]}))
    for given, flag in ((dict(tp=1), "--tp"), (dict(hardware="h100-sxm"), "--hardware"),
                        (dict(engine="vllm"), "--engine"), (dict(router="least_outstanding"), "--router")):
        with pytest.raises(PhasewiseError, match=f"^{flag} cannot be combined with --deployment"):
            run(deployment=str(path), rate=4, requests=10, **given)
    assert run(deployment=str(path), rate=4, requests=10, max_num_seqs=None).summary()["gpus"] == 2


def test_run_refuses_a_diffusion_model_and_the_dllm_arguments():
    """run(model=LLaDA) returned autoregressive figures; run(dllm=...) failed as an unknown engine knob."""
    with pytest.raises(PhasewiseError, match="LLaDA-8B-Instruct is a diffusion LM .* it needs --dllm .*simulate_dllm"):
        run(model="GSAI-ML/LLaDA-8B-Instruct", rate=1, requests=5)
    with pytest.raises(PhasewiseError, match="^run\\(\\) does not take dllm: .*simulate_dllm"):
        run(dllm="fast-dllm", rate=1, requests=5)


def test_run_gives_simulates_caveats_and_notes_and_refuses_what_it_is_asked_to():
    """run()'s result carries the chip caveat and the notes simulate prints (summary()'s "caveats" and "notes", last,
    as simulate --json has them); refuse_beyond_context=True rejects a request past the context as simulate does
    (it was not an argument of run()), and rejection_warning() is simulate's error for a run of nothing else."""
    result = run(hardware="mi300x", trace="azure-conv", trace_limit=50, rate=5, prefix_caching="on")
    summary = result.summary()
    assert list(summary)[-2:] == ["caveats", "notes"]
    assert "mi300x" in summary["caveats"] and summary["caveats"] == result.caveats
    assert summary["notes"][0].startswith("--prefix-caching on (prefix_caching: true): workload")
    refused = run(isl=200_000, osl=10, rate=1, requests=5, refuse_beyond_context=True)
    assert refused.summary()["rejected"] == 5
    with pytest.raises(PhasewiseError, match="^nothing can run: 5 of 5 .* beyond the model's context"):
        refused.rejection_warning()
    replayed = run(isl=200_000, osl=10, rate=1, requests=2).summary()
    assert replayed["completed"] == 2  # the papers' replays run them where the KV fits
    assert "caveats" not in run(**SMALL).summary()  # an H100: no caveat


def test_run_summary_matches_simulate_json_with_caveats_and_notes(run_cli):
    """The same arguments as the flags: run(**kw).summary() is simulate --json's, caveats and notes included."""
    kw = dict(hardware="mi300x", trace="azure-conv", trace_limit=30, rate=5, prefix_caching="on")
    code, out, _ = run_cli("simulate", "--json", "--hardware", "mi300x", "--trace", "azure-conv", "--trace-limit",
                           "30", "--rate", "5", "--prefix-caching", "on")
    assert code == 0
    cli = json.loads(out)
    from phasewise.apps.jsonout import dumps

    api = json.loads(dumps(run(**kw).summary()))
    for d in (cli, api):
        d.pop("sim")
    assert api == cli


def test_estimate_checks_its_arguments_and_flags_what_the_cli_refuses():
    """images_per_sequence -1 took 326 tokens off the prompt (negative encoder FLOPs), 1.5 gave a 1513.0-token
    prompt, 1 without image_px a TypeError; a prompt past the context came back as a figure without a word."""
    vl = "Qwen/Qwen2.5-VL-7B-Instruct"
    cases = ((dict(images_per_sequence=-1, image_px=(512, 512)), "images_per_sequence .* must be >= 0"),
             (dict(images_per_sequence=1.5, image_px=(512, 512)), "must be an integer >= 0 \\(got 1.5\\)"),
             (dict(images_per_sequence=1), "needs image_px"),
             (dict(image_px=(512, 512)), "image_px sizes the images"),
             (dict(batch=1.5), "^--batch must be an integer >= 1"),
             (dict(prompt_len=float("nan")), "^--prompt-len must be an integer"),
             (dict(tp=2.0), "^--tp must be an integer"))
    for kwargs, message in cases:
        with pytest.raises(PhasewiseError, match=message):
            estimate(vl, "h100-sxm", **kwargs)
    assert estimate(vl, "h100-sxm", images_per_sequence=1, image_px=(512, 512)).prompt_len > 1024
    long = estimate(LLAMA, "h100-sxm", prompt_len=500_000)
    assert long.beyond_context().startswith("--prompt-len 500,000 is beyond meta-llama/Llama-3.1-8B's 131,072")
    assert long.to_dict()["beyond_context"] == long.beyond_context()
    assert "beyond_context" not in estimate(LLAMA, "h100-sxm").to_dict()
    from phasewise.perf.estimate import refuse_beyond_context

    with pytest.raises(PhasewiseError, match="the engines refuse such a request"):
        refuse_beyond_context(long)


def test_plan_refuses_options_plan_flags_refuse():
    """PlanOptions(batch_caps=(0,)) ranked a strategy at max_num_seqs 1; chunk_sizes=(-1,) dropped the chunked
    strategies silently: now one line naming the field, before any strategy is built."""
    work = workload_spec(None, "poisson", None, None, "fixed", "fixed", 0.0, 0.0, 0, context_tokens=131072)
    base = dict(tp_options=(1,), tp_across_nodes=False, disaggregated=False)
    for options, message in ((dict(batch_caps=(0,)), "PlanOptions.batch_caps \\(plan --batch-caps\\) must list "
                                                     "integers >= 1 \\(got \\(0,\\)\\)"),
                             (dict(chunk_sizes=(-1,)), "PlanOptions.chunk_sizes .* must list integers >= 1"),
                             (dict(tp_options=()), "PlanOptions.tp_options .* must list integers >= 1"),
                             (dict(tp_options=(1.5,)), "PlanOptions.tp_options"),
                             (dict(memory_fraction=2.0),
                              "PlanOptions.memory_fraction \\(plan --memory-fraction\\) must be in \\(0, 1\\]"),
                             (dict(ratios=((1, 0),)), "PlanOptions.ratios must list")):
        with pytest.raises(PhasewiseError, match=message):
            plan(LLAMA, "h100-sxm", 1, Slo(1000, 50), work, opts=PlanOptions(**{**base, **options}))
    with pytest.raises(PhasewiseError, match="^--gpus must be >= 1 \\(got 0\\)"):
        plan(LLAMA, "h100-sxm", 0, Slo(1000, 50), work, opts=PlanOptions(**base))
    with pytest.raises(PhasewiseError, match="^plan\\(\\): slo must be a Slo"):
        plan(LLAMA, "h100-sxm", 1, (1000, 50), work, opts=PlanOptions(**base))
    PlanOptions(**base, chunk_sizes=(), ratios=()).check()  # the scenarios' own: allowed


def test_workload_refuses_arrays_the_trace_loader_refuses():
    """Workload([0, 1], [1024.9, 10.5], ...) truncated to 1024 and 10 tokens; a 2-D array passed, a scalar was a
    TypeError, NaN or text a bare ValueError."""
    cases = ((((0, 1), (1024.9, 10.5), (1, 2)), "request 0: prompt tokens must be an integer >= 1 .*got 1024.9"),
             (((0, 1), (10, 10), (1.7, 2)), "request 0: output tokens must be an integer >= 1 .*got 1.7"),
             (((0, 1), (float("nan"), 10), (1, 2)), "prompt tokens must be an integer .*got nan"),
             (((0, 1), ("a", 10), (1, 2)), "prompt_tokens must be a 1-D array of numbers, .* \\(got text\\)"),
             ((((0, 1),), ((10, 10),), ((1, 2),)), "arrival_s must be a 1-D array .* \\(got a 2-D array\\)"),
             ((0.0, 10, 1), "arrival_s must be a 1-D array .* \\(got a scalar\\)"),
             (((0, 1), (10,), (1, 2)), "differ in length"))
    for arrays, message in cases:
        with pytest.raises(PhasewiseError, match=message):
            Workload(*arrays)
    kept = Workload([0, 1], [1024.0, 10], np.array([1, 2], dtype=np.uint16))  # whole numbers in any dtype
    assert kept.prompt_tokens.dtype == np.int64 and kept.prompt_tokens.tolist() == [1024, 10]


def test_a_result_owns_its_arrays_and_its_summary_owns_its_policy():
    """r.prompt_tokens was the workload's array: `t = r.prompt_tokens; t += r.output_tokens` lengthened the next
    run's prompts (its E2E mean 1039.6 -> 1059.2 ms); summary()["policy"] was r.policy itself."""
    spec = build(rate=4, requests=30, isl=512, osl=64, prefix_caching="on")
    work = spec.workload
    first = simulate(spec.deployment, work, spec.slo)
    e2e = first.summary()["e2e_ms"]["mean"]
    for name in ("prompt_tokens", "output_tokens", "arrival_s"):
        assert not np.shares_memory(getattr(first, name), getattr(work, name))
    tokens = first.prompt_tokens
    tokens += first.output_tokens
    assert (work.prompt_tokens == 512).all()
    assert simulate(spec.deployment, work, spec.slo).summary()["e2e_ms"]["mean"] == e2e
    summary = first.summary()
    assert summary["policy"] == first.policy and summary["policy"] is not first.policy
    summary["policy"]["x"] = 1
    for value in summary["policy"].values():
        if isinstance(value, dict):
            value["y"] = 1
    assert "x" not in first.policy and all("y" not in v for v in first.policy.values() if isinstance(v, dict))


def test_arguments_of_the_wrong_type_are_one_line_errors_naming_them():
    """requests=2e3, concurrency=16.0, seed=1.0 failed inside numpy; rate='8' a TypeError; simulate's slo as a
    tuple or its deployment as a path an AttributeError; a scenario override given as an int an AttributeError."""
    for kwargs, message in ((dict(rate=8, requests=2e3), "^--requests takes an integer \\(got 2000.0\\)"),
                            (dict(concurrency=16.0, requests=10), "^--concurrency takes an integer"),
                            (dict(rate=4, requests=10, seed=1.0), "^--seed takes an integer"),
                            (dict(rate="8", requests=10), "^--rate takes a number \\(got '8'\\)"),
                            (dict(rate=4, requests=10, slo_ttft_ms="500"), "^--slo-ttft-ms takes a number")):
        with pytest.raises(PhasewiseError, match=message):
            run(**kwargs)
    spec = build(rate=4, requests=10)
    for args, message in (((spec.deployment, spec.workload, (1000, 50)), "slo must be a Slo"),
                          (("deploy.yaml", spec.workload), "deployment must be a Deployment .*load_deployment"),
                          ((spec.deployment, [(0.0, 100, 10)]), "workload must be a Workload or a ClosedLoop")):
        with pytest.raises(PhasewiseError, match=message):
            simulate(*args)
    with pytest.raises(PhasewiseError, match="seed must be an integer >= 0"):
        simulate(spec.deployment, spec.workload, seed=-1)
    scenario = get_scenario("odb-dllm")
    assert scenario.resolve({"gen_length": 512})["gen_length"] == 512 == scenario.resolve({"gen_length": "512"})[
        "gen_length"]
    with pytest.raises(PhasewiseError, match="--set gen_length='512.5' is not an integer"):
        scenario.resolve({"gen_length": 512.5})
    with pytest.raises(PhasewiseError, match="--set gen_length=None is not text or a value of the key's own type"):
        scenario.resolve({"gen_length": None})
