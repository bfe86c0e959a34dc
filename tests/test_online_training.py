"""Online continual learning beside serving (Alchemist): the colocated trainer in the simulator, its flags, and the
`reproduce alchemist` scenario."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasewise.errors import PhasewiseError
from phasewise.scenarios import get_scenario
from phasewise.sim import simulate
from phasewise.sim.api import build, deployment_from_flags
from phasewise.sim.deployment import build_deployment

LLAMA = "meta-llama/Llama-3.1-8B"


def spec(rate=6.0, n=400, isl=512, osl=64, seed=0, **kw):
    return build(model=LLAMA, hardware="h100-sxm", rate=rate, requests=n, isl=isl, osl=osl, isl_dist="lognormal",
                 osl_dist="lognormal", isl_spread=0.5, osl_spread=0.5, seed=seed, **kw)


def run(training=None, check=False, **kw):
    s = spec(**kw)
    data = s.deployment.model_dump()
    if training is not None:
        data["online_training"] = {"method": "lora", **training}
    result = simulate(build_deployment(data), s.workload, s.slo, check_invariants=check)
    return result, result.summary()["policy"].get("online_training")


# --- the capability ---------------------------------------------------------------------------------------
def test_training_happens_only_with_feedback():
    plain, _ = run()
    # feedback from too few requests to fill one batch: no step, and serving unchanged at this light load
    starved, few = run({"feedback_share": 0.01, "train_batch_tokens": 8192})
    fed, many = run({"feedback_share": 0.5, "train_batch_tokens": 8192})
    assert few["samples"] > 0 and few["steps"] == 0 and few["trained_tokens"] == 0
    assert np.array_equal(starved.first_token_s, plain.first_token_s)
    assert many["steps"] > 0 and many["trained_tokens"] > 0 and many["training_tokens_per_s"] > 0
    assert many["samples"] == pytest.approx(0.5 * 400, abs=1)


def test_time_slicing_delays_serving_while_sm_partition_slows_it():
    plain, _ = run(n=300)
    sliced, ts = run({"feedback_share": 0.5, "sharing": "time-slice"}, n=300)
    shared, sm = run({"feedback_share": 0.5, "sharing": "sm-partition", "trainer_sm_share": 0.3}, n=300)
    assert ts["steps"] > 0 and sm["steps"] > 0
    step_s = ts["trainer_busy_s"] / ts["steps"]
    # time-slice: a token waits out a whole step; sm-partition: no such stall, but iterations run slower meanwhile
    assert np.nanmax(sliced.max_tbt_s) > step_s > np.nanmax(shared.max_tbt_s)
    assert np.nanmean(shared.tpot_s) > np.nanmean(plain.tpot_s)
    assert sm["trainer_busy_s"] / sm["steps"] > 2.5 * step_s  # the trainer on 30 % of the SMs
    assert sm["serving_time_lost_s"] > 0 and ts["serving_time_lost_s"] > 0


def test_recording_shrinks_kv_capacity_and_adds_prefill_time():
    plain, _ = run(n=200)
    recompute, rec = run({"reuse": "recompute", "feedback_share": 0.5}, n=200)
    kept, keep = run({"reuse": "keep", "feedback_share": 0.5}, n=200)
    alone_kv = plain.instances[0].kv_capacity_blocks
    assert kept.instances[0].kv_capacity_blocks < recompute.instances[0].kv_capacity_blocks < alone_kv
    assert keep["kv_blocks_reserved"] == alone_kv - kept.instances[0].kv_capacity_blocks
    assert rec["recorded_bytes"] == 0 and keep["recorded_bytes"] > 0 and keep["recording_s"] > 0
    # recording alone (the trainer on a GPU of its own): prefill iterations take longer, nothing else changes
    separate, sep = run({"reuse": "offload", "feedback_share": 0.5, "placement": "separate"}, n=200)
    assert sep["steps"] > 0 and separate.instances[0].kv_capacity_blocks == alone_kv
    assert np.nanmean(separate.ttft_s) > np.nanmean(plain.ttft_s)


def test_reuse_raises_training_throughput_and_offload_lowers_peak_memory():
    _, rec = run({"reuse": "recompute", "feedback_share": 0.5}, n=300)
    _, keep = run({"reuse": "keep", "feedback_share": 0.5}, n=300)
    _, off = run({"reuse": "offload", "feedback_share": 0.5}, n=300)  # hedged: layers kept to hide the reload
    _, free = run({"reuse": "offload", "feedback_share": 0.5, "keep_layers": 0}, n=300)  # every layer offloaded
    assert keep["training_tokens_per_trainer_s"] > rec["training_tokens_per_trainer_s"]
    assert off["training_tokens_per_trainer_s"] > rec["training_tokens_per_trainer_s"]
    assert off["step_s"]["reload"] <= 0.01 * sum(off["step_s"].values()) < free["step_s"]["reload"]
    assert free["peak_training_bytes"] < min(rec["peak_training_bytes"], keep["peak_training_bytes"])
    assert free["keep_layers"] == 0 and off["keep_layers"] > 0
    # reuse drops the forward of the recorded prompts; the answers' tokens (not recorded) are still forwarded
    assert rec["step_s"]["reload"] == 0 and 0 < keep["step_s"]["forward"] < 0.5 * rec["step_s"]["forward"]


def test_lora_is_cheaper_than_full_fine_tuning():
    _, lora = run({"feedback_share": 0.5}, n=200, tp=4)
    _, full = run({"feedback_share": 0.5, "method": "full"}, n=200, tp=4)
    assert lora["training_tokens_per_trainer_s"] > full["training_tokens_per_trainer_s"]
    assert lora["peak_training_bytes"] < full["peak_training_bytes"]


def test_full_fine_tuning_that_does_not_fit_is_a_one_line_error():
    with pytest.raises(PhasewiseError, match="online_training: the trainer needs .* GiB per GPU"):
        run({"method": "full"}, n=20)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(share=st.sampled_from([0.05, 0.3, 1.0]), batch=st.sampled_from([512, 2048, 8192]),
       reuse=st.sampled_from(["recompute", "keep", "offload"]),
       sharing=st.sampled_from(["time-slice", "sm-partition"]))
def test_conservation(share, batch, reuse, sharing):
    """Every served request still finishes; every feedback sample is trained at most once (check mode raises
    otherwise), and samples are either trained or left in the queue."""
    result, t = run({"feedback_share": share, "train_batch_tokens": batch, "reuse": reuse, "sharing": sharing},
                    check=True, n=120, rate=8.0)
    assert np.isfinite(result.finish_s).all()
    assert t["samples_trained"] + t["samples_untrained"] == t["samples"]
    assert t["trained_tokens"] <= t["steps"] * batch
    assert t["reused_tokens"] <= t["trained_tokens"]


# --- flags and errors -------------------------------------------------------------------------------------
def test_flags_build_the_block():
    dep = deployment_from_flags(online_training="lora", train_reuse_mode="offload", feedback_share=0.3,
                                train_batch_tokens=4096, gpu_sharing="sm-partition", trainer_sm_share=0.4,
                                lora_rank=8, keep_layers=2)
    t = dep.online_training
    assert (t.method, t.reuse, t.feedback_share, t.train_batch_tokens, t.sharing, t.trainer_sm_share, t.lora_rank,
            t.keep_layers) == ("lora", "offload", 0.3, 4096, "sm-partition", 0.4, 8, 2)
    assert deployment_from_flags().online_training is None


@pytest.mark.parametrize("block, message", [
    ({"method": "lora", "trainer_sm_share": 0.3}, "trainer_sm_share applies to sharing sm-partition"),
    ({"method": "lora", "keep_layers": 2}, "keep_layers applies to reuse offload"),
    ({"method": "lora", "reuse": "keep", "placement": "separate"}, "placement separate takes reuse recompute or offload"),
    ({"method": "sgd"}, "online_training.method"),
])
def test_bad_blocks_are_one_line_errors(block, message):
    data = spec(n=10).deployment.model_dump()
    with pytest.raises(PhasewiseError, match=message) as err:
        build_deployment({**data, "online_training": block})
    assert "\n" not in str(err.value)
    disagg = build(model=LLAMA, arch="disagg", rate=1, requests=10).deployment.model_dump()
    with pytest.raises(PhasewiseError, match="online_training needs collocated instances"):
        build_deployment({**disagg, "online_training": {"method": "lora"}})


@pytest.mark.parametrize("args, message", [
    (("--train-reuse-mode", "keep"), "--train-reuse-mode needs --online-training full|lora"),
    (("--online-training", "qlora"), "--online-training takes full, lora or off"),
    (("--online-training", "lora", "--arch", "disagg"), "--online-training needs --arch collocated"),
    (("--online-training", "lora", "--train-reuse-mode", "reuse"), "--train-reuse-mode 'reuse' is not one of"),
    (("--online-training", "lora", "--gpu-sharing", "sm-partition", "--trainer-sm-share", "1.5"),
     "--trainer-sm-share must be in (0, 1)"),
    (("--online-training", "lora", "--trainer-sm-share", "0.3"), "--trainer-sm-share needs --gpu-sharing sm-partition"),
    (("--online-training", "lora", "--feedback-share", "0"), "--feedback-share must be in (0, 1]"),
    (("--online-training", "full", "--lora-rank", "8"), "--lora-rank needs --online-training lora"),
    (("--online-training", "lora", "--keep-layers", "2"), "--keep-layers needs --train-reuse-mode offload"),
    (("--online-training", "lora", "--host-link", "nvlink"), "--host-link needs --train-reuse-mode offload"),
    (("--online-training", "lora", "--train-reuse-mode", "offload", "--host-link", "ib"),
     "--host-link 'ib' is not one of pcie, nvlink"),
    (("--host-link", "pcie"), "--host-link needs --online-training full|lora"),
])
def test_bad_flags_are_one_line_errors(run_cli, args, message):
    code, out, err = run_cli("simulate", "--rate", "2", "--requests", "10", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_simulate_prints_the_trainer(run_cli):
    args = ("simulate", "--rate", "8", "--requests", "200", "--isl", "512", "--osl", "32", "--online-training", "lora",
            "--train-reuse-mode", "offload", "--feedback-share", "0.5", "--train-batch-tokens", "4096")
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    t = json.loads(out)["policy"]["online_training"]
    assert t["method"] == "lora" and t["reuse"] == "offload" and t["steps"] > 0
    code, out, err = run_cli(*args)
    assert code == 0 and "Online training (LoRA r=16, reuse offload over pcie" in out and "Memory per GPU" in out


def test_simulate_offloads_over_the_link_host_link_names(run_cli):
    """--host-link chooses offload's link (the YAML's host_link): every layer offloaded, NVLink's reloads hide
    behind the backward where PCIe's are exposed."""
    args = ("simulate", "--model", LLAMA, "--tp", "4", "--rate", "6", "--requests", "300", "--online-training", "full",
            "--train-reuse-mode", "offload", "--feedback-share", "0.5", "--keep-layers", "0", "--json")
    reload_share = {}
    for link in ("pcie", "nvlink"):
        code, out, err = run_cli(*args, "--host-link", link)
        assert code == 0, err
        t = json.loads(out)["policy"]["online_training"]
        assert t["host_link"] == link and t["steps"] > 0
        reload_share[link] = t["step_s"]["reload"] / sum(t["step_s"].values())
    assert reload_share["pcie"] > 0.2 and reload_share["nvlink"] < 0.5 * reload_share["pcie"], reload_share


# --- the scenario ----------------------------------------------------------------------------------------
def _checks(**sets):
    out = get_scenario("alchemist").run({k: str(v) for k, v in sets.items()}).to_json()
    return {c["name"]: c for c in out["checks"]}, out


def test_alchemist_passes_on_its_defaults_but_its_known_gap(scenario_defaults):
    """The memory check is a known gap (tests/test_reproduce.py KNOWN_GAPS): full fine-tuning's optimizer state."""
    checks = {c["name"]: c for c in scenario_defaults("alchemist").to_json()["checks"]}
    failed = {name for name, c in checks.items() if not c["pass"]}
    assert failed == {"peak training memory (offload vs recompute)"}, [(c["name"], c["phasewise"], c["why"])
                                                                       for c in checks.values() if not c["pass"]]


GAIN = "training throughput gain"  # its name goes on with the offload run it compares (layers kept on the GPU)
MEMORY = "peak training memory (offload vs recompute)"
TTFT = "serving TTFT overhead of activation recording (%)"
# the README's known misses: full fine-tuning's resident state keeps the memory above the paper's 0.53x; LoRA's
# frozen weights (a shorter backward, little optimizer state) put its gain, forward share and memory past the bands
KNOWN_MISSES = {"full": {MEMORY}, "lora": {GAIN, "redundant forward share of the training step", MEMORY}}


@pytest.mark.parametrize("sets", [{"feedback_share": 0.05}, {"feedback_share": 0.4}, {"method": "lora"},
                                  {"host_link": "nvlink"}],
                         ids=["feedback-0.05", "feedback-0.4", "lora", "nvlink"])
def test_alchemist_directions_hold_under_variations(sets):
    """Every check but the README's known misses passes: the TTFT check's value below 0 at a 5 % feedback share and
    with LoRA (-0.05 %, -0.03 %) is the shift of iteration boundaries the recording causes, not a regression."""
    checks, _ = _checks(sweep_shares=sets.get("feedback_share", 0.2), **sets)
    gain = next(c for name, c in checks.items() if name.startswith(GAIN))
    assert gain["phasewise"] > 1.0
    assert checks[MEMORY]["phasewise"] < 1.0
    assert 0 < checks["redundant forward share of the training step"]["phasewise"] < 0.5
    known = KNOWN_MISSES[sets.get("method", "full")]
    failed = [(name, c["phasewise"], c["band"]) for name, c in checks.items()
              if not c["pass"] and not any(name.startswith(miss) for miss in known)]
    assert not failed, failed
    assert checks[TTFT]["pass"], checks[TTFT]
    if "host_link" in sets:  # the run offloads over the link the setup names, and the check says so
        assert "by the hedge over nvlink" in gain["name"], gain["name"]


def test_recording_is_all_that_differs_between_the_ttft_checks_pair(monkeypatch):
    """The recording check's pair (serving alone, and recording with the trainer on its own GPU) runs the same
    arrivals: with the recording's cost zero the two are identical, request by request, so the value the check
    averages is the recording's effect alone (of either sign: it moves iteration boundaries)."""
    from phasewise.scenarios import alchemist
    from phasewise.sim import online_training

    setup = {key: param.value for key, param in alchemist.SETUP.items()} | {"requests": 300, "feedback_share": 0.5}
    alone = alchemist._run(setup, None)
    recorded = alchemist._run(setup, alchemist._block(setup, "offload", placement="separate"))
    assert recorded.summary()["policy"]["online_training"]["recording_s"] > 0
    assert not np.array_equal(recorded.first_token_s, alone.first_token_s)
    monkeypatch.setattr(online_training, "recording_bytes_per_token", lambda *args, **kwargs: 0.0)
    free = alchemist._run(setup, alchemist._block(setup, "offload", placement="separate"))
    assert free.summary()["policy"]["online_training"]["recording_s"] == 0
    assert np.array_equal(free.first_token_s, alone.first_token_s)


def test_a_recording_that_slows_serving_fails_the_ttft_check(monkeypatch):
    """The band's room below 0 does not hide a regression: recording 30x the bytes costs serving well over 5 %."""
    from phasewise.sim import online_training

    real = online_training.recording_bytes_per_token
    monkeypatch.setattr(online_training, "recording_bytes_per_token", lambda *a, **k: 30 * real(*a, **k))
    checks, _ = _checks(sweep_shares=0.2, requests=600)
    assert checks[TTFT]["phasewise"] > 5.0 and not checks[TTFT]["pass"]


def test_a_step_with_nothing_recorded_costs_what_recomputing_it_costs():
    """Reuse with no recording (keep's buffer too small for any prompt) pays the trainer's forward of its layers;
    the head's forward, already in the reuse step, is not paid twice: per step, the recompute trainer's time."""
    per_step = {}
    for reuse, extra in (("recompute", {}), ("keep", {"record_buffer_batches": 1e-6})):
        s = build(model=LLAMA, hardware="h100-sxm", rate=6.0, requests=160, isl=1024, osl=64, seed=0)
        data = s.deployment.model_dump()
        data["online_training"] = {"method": "lora", "reuse": reuse, "sample": "prompt", "feedback_share": 1.0,
                                   "train_batch_tokens": 4096, **extra}
        stats = simulate(build_deployment(data), s.workload, s.slo).summary()["policy"]["online_training"]
        assert stats["steps"] > 0 and stats["reused_tokens"] == 0
        per_step[reuse] = stats["trainer_busy_s"] / stats["steps"]
    assert per_step["keep"] == pytest.approx(per_step["recompute"], rel=1e-9)


def _shared_prefix_run(prefix_caching: bool) -> dict:
    """48 prompts of 2,048 tokens opening with the same three 512-token blocks, every one fed back, keep reuse."""
    s = build(model=LLAMA, hardware="h100-sxm", tp=4, rate=2.0, requests=48, isl=2048, osl=16, seed=0)
    work = s.workload
    work.prefix_hashes = [(1, 2, 3, 100 + i) for i in range(len(work.arrival_s))]
    data = s.deployment.model_dump()
    data["instances"][0]["prefix_caching"] = prefix_caching
    data["online_training"] = {"method": "lora", "reuse": "keep", "sample": "prompt", "feedback_share": 1.0,
                               "train_batch_tokens": 8192}
    return simulate(build_deployment(data), work, s.slo, check_invariants=True).summary()["policy"]["online_training"]


def test_a_cached_prefix_is_not_reused_as_if_serving_had_recorded_it():
    """Serving's prefill records only what it computes: a prefix-cache hit's tokens are the trainer's to
    forward (Alchemist records activations in the prefill phase, and a cached prefix has none for this request)."""
    off, on = _shared_prefix_run(False), _shared_prefix_run(True)
    assert off["trained_tokens"] == on["trained_tokens"] > 0
    assert off["reused_tokens"] == off["trained_tokens"]
    # after the first request, 3 of every 4 prompt blocks are hits: about a quarter of the tokens recorded
    assert on["reused_tokens"] < 0.3 * on["trained_tokens"]
    assert on["recorded_bytes"] < 0.3 * off["recorded_bytes"]
    assert on["step_s"]["forward"] > off["step_s"]["forward"]


def test_a_trainer_that_does_not_fit_is_told_what_it_does_not_already_use(run_cli):
    """The error's suggestions leave out the settings in use: LoRA with offload over PCIe keeps 35 of 48 layers on
    the GPU (the fewest that hide the reload), so it says to keep fewer layers, not to use LoRA or offload (it said
    both); full fine-tuning with recompute is told both."""
    code, _, err = run_cli("simulate", "--requests", "20", "--rate", "4", "--online-training", "lora", "--model",
                           "Qwen/Qwen3-30B-A3B", "--train-reuse-mode", "offload")
    assert code == 2 and "keep fewer layers on the GPU (--keep-layers: 35 of 48 kept, by the hedge)" in err
    assert "use --online-training lora" not in err and "--train-reuse-mode offload" not in err
    code, _, err = run_cli("simulate", "--requests", "20", "--rate", "4", "--online-training", "full", "--model",
                           "Qwen/Qwen3-30B-A3B")
    assert code == 2 and "use --online-training lora, --train-reuse-mode offload, or raise --tp" in err


def test_the_throughput_check_names_the_offload_run_it_compares(scenario_defaults):
    """At the defaults the hedge keeps 20 of the 32 layers on the GPU (over PCIe the fewest whose reload hides
    behind the backward): the check says so, rather than a bare 'offload'."""
    result = scenario_defaults("alchemist")
    gain = next(c for c in result.to_json()["checks"] if c["name"].startswith(GAIN))
    assert gain["name"] == (f"{GAIN}: offload (20 of 32 layers kept on the GPU, by the hedge over pcie) "
                            "vs recompute"), gain["name"]
    assert "every layer kept" not in gain["why"] and "0.000 s of reload exposed" in gain["why"]
    plotted = [row[0] for row in result.outcome.tables[0]["rows"]]
    assert "offload (20 of 32 layers kept on the GPU, by the hedge over pcie)" in plotted, plotted


def test_the_requests_help_gives_the_steps_the_feedback_sweep_rests_on(scenario_defaults):
    """The report of training vs feedback share rests on a few steps per share (one per 8,192 tokens of feedback):
    the setup's help says how many, as the report's steps column has them (it had said 'tens')."""
    from phasewise.scenarios import alchemist

    report = scenario_defaults("alchemist").outcome.tables[-1]
    share, trainer, steps = (report["columns"].index(c) for c in ("feedback share", "trainer", "steps"))
    counts = [row[steps] for row in report["rows"] if row[trainer] == "recompute"]
    assert [row[share] for row in report["rows"] if row[trainer] == "recompute"] == [0.05, 0.1, 0.2, 0.4]
    help_text = alchemist.SETUP["requests"].source
    assert "tens of training steps" not in help_text
    assert f"{counts[0]}, {counts[1]}, {counts[2]} and {counts[3]} at 5, 10, 20 and 40 %" in help_text, counts
