"""Review fixes of the dLLM surfaces (simulate / plan / validate --dllm) and of the online trainer's errors: plan
checks the lengths it samples as simulate does, honours a typed --batch-caps, the memory check holds the logits the
time model charges, --jump-probs / --jump-copies are refused or named where they are the problem, validate refuses
the wrong kind of model, plan --json carries its decoding, and the trainer's errors name the flags (or the file's
keys) that set what they speak of."""

from __future__ import annotations

import json

import pytest

from phasewise.perf import CostModel
from phasewise.perf.dllm import dllm_memory
from phasewise.perf.memory import memory_fit
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.dllm import decoding

LLADA = "GSAI-ML/LLaDA-8B-Instruct"
LLAMA = "meta-llama/Llama-3.1-8B"
PLAN = ("plan", "--dllm", "odb", "--model", LLADA, "--hardware", "h100-sxm", "--gpus", "1", "--slo-ttft-ms", "5000")


def _one_line_error(code: int, err: str) -> str:
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize("lengths", [
    ("--isl", "1000", "--osl", "700", "--osl-dist", "lognormal", "--osl-spread", "0.6"),  # answers past the canvas
    ("--isl", "2000", "--isl-dist", "lognormal", "--isl-spread", "0.5", "--osl", "100"),  # prompts past the context
])
def test_plan_refuses_the_sampled_requests_simulate_refuses(run_cli, lengths):
    """plan --dllm checked only the means; it ranked requests simulate --dllm refuses (32 of 200 answers past the
    1,024-token canvas). It now checks the lengths it samples, with simulate's message."""
    planned = _one_line_error(*run_cli(*PLAN, *lengths, "--batch-caps", "1,4")[::2])
    simulated = _one_line_error(*run_cli("simulate", "--dllm", "odb", "--model", LLADA, "--rate", "1", "--requests",
                                         "200", *lengths)[::2])
    assert planned == simulated and " of 200 " in planned


def test_a_typed_batch_cap_is_honoured(run_cli):
    """--batch-caps 256 (the autoregressive default's text) was read as 'not typed': the dLLM caps were ranked."""
    err = _one_line_error(*run_cli(*PLAN, "--batch-caps", "256")[::2])
    assert "no batch cap in 256 fits" in err


def test_the_memory_check_holds_every_decoded_position_s_logits():
    """forward_shape charges the LM head at every new position; the memory check held one logit row per request.
    A batched refresh over prompt + canvas holds batch x (prompt + canvas) rows, at activation_bytes' bytes."""
    model = load_model(LLADA)
    cm = CostModel(model, load_hardware("h100-sxm"), load_quant("bf16"), load_engine("hf-eager"))
    batch, per_request = 4, 1000 + 1024
    mem = dllm_memory(cm, 1000, 1024, batch)
    one_row = memory_fit(model, cm.hw, cm.quant, 1, 1, max_tokens=batch * per_request, max_seqs=batch)
    assert mem.activation_bytes - one_row.activation_bytes == pytest.approx(
        (batch * per_request - batch) * model.vocab_size * 4.0)  # fp32 logits, as activation_bytes holds them
    # a jump-share step wider than prompt + canvas is the largest forward
    wide = dllm_memory(cm, 100, 64, 1, step_tokens=4096)
    assert wide.activation_bytes > dllm_memory(cm, 100, 64, 1).activation_bytes


def test_a_batch_whose_logits_do_not_fit_is_refused_by_its_cap(run_cli):
    """40 x 2,024 positions x 126,464 vocab: ~41 GB of fp32 logits beside the KV; simulate accepted it."""
    err = _one_line_error(*run_cli("simulate", "--model", LLADA, "--dllm", "odb", "--rate", "5", "--requests",
                                   "100", "--isl", "1000", "--osl", "250", "--batch-cap", "40")[::2])
    assert err.startswith("error: --batch-cap 40 does not fit") and "logits" in err and "lower --batch-cap" in err
    code, out, err = run_cli(*PLAN, "--isl", "1000", "--osl", "250", "--batch-caps", "1,40", "--json")
    assert code == 0, err
    assert [r["batch_cap"] for r in json.loads(out)["ranking"]] == [1]  # 40 is not ranked


@pytest.mark.parametrize("command", ["simulate", "plan"])
def test_jump_probs_without_copies_are_refused(run_cli, command):
    """--jump-copies 1 turns jump-share off: --jump-probs was silently ignored there."""
    args = (("--concurrency", "1", "--requests", "2") if command == "simulate" else ("--gpus", "1"))
    err = _one_line_error(*run_cli(command, "--model", LLADA, "--dllm", "odb", "--jump-copies", "1", "--jump-probs",
                                   "0.5,0.5", "--isl", "100", "--osl", "100", *args)[::2])
    assert "--jump-probs needs --jump-copies 2 or more" in err


@pytest.mark.parametrize("command", ["simulate", "plan"])
def test_copies_that_do_not_fit_are_named(run_cli, command):
    """4,000 copies of a block do not fit; the error blamed --batch-cap 1 ('lower --batch-cap')."""
    args = (("--concurrency", "1", "--requests", "2") if command == "simulate" else ("--gpus", "1"))
    err = _one_line_error(*run_cli(command, "--model", LLADA, "--dllm", "odb", "--jump-copies", "4000", "--isl",
                                   "100", "--osl", "100", *args)[::2])
    assert err.startswith("error: --jump-copies 4000 does not fit") and "lower --jump-copies" in err
    assert "--batch-cap" not in err


def test_validate_refuses_the_wrong_kind_of_model(run_cli):
    """validate --dllm forced an autoregressive model bidirectional without a word (simulate and plan refuse it);
    validate --train-reuse timed a causal step of a diffusion model's shape. Both refuse before torch loads."""
    err = _one_line_error(*run_cli("validate", "--dllm", "--hardware", "cpu-local", "--model", LLAMA, "--quick")[::2])
    assert "--dllm needs a diffusion LM" in err and f"{LLAMA} is autoregressive" in err
    err = _one_line_error(*run_cli("validate", "--train-reuse", "--hardware", "cpu-local", "--model", LLADA,
                                   "--quick")[::2])
    assert "--train-reuse times a causal LM's training step" in err and "give an autoregressive --model" in err


def test_plan_reports_the_decoding_it_ranked(run_cli):
    """plan --dllm --json said only {"dllm": "odb"}; it now carries simulate --json's `dllm` block, and the text
    title the main knobs."""
    args = (*PLAN, "--isl", "200", "--osl", "90", "--batch-caps", "1", "--jump-probs", "0.5,0.3,0.2")
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    expected = decoding("odb", jump_probs=(0.5, 0.3, 0.2)).to_json()
    assert json.loads(out)["dllm"] == expected and expected["jump_probs"] == [0.5, 0.3, 0.2]
    code, out, err = run_cli(*args)
    assert code == 0, err
    title = " ".join(out.split())
    assert "canvas 1024 in blocks of 32, cache dual, threshold 0.9, 2.77 tokens/forward, ALP, jump-share x4" in title


@pytest.mark.parametrize(("args", "message"), [
    (("--online-training", "lora", "--train-reuse-mode", "offload", "--keep-layers", "40"),
     f"--keep-layers 40: {LLAMA} has 32 layers to keep on the GPU (give 0-32)"),
    (("--online-training", "full"), "lower --train-batch-tokens, use --online-training lora, --train-reuse-mode "
                                    "offload, or raise --tp"),
    (("--online-training", "lora", "--pp", "2"), "--online-training needs --pp 1"),
    (("--online-training", "lora", "--mapping", "halo"), "--online-training does not combine with --mapping"),
])
def test_trainer_errors_name_the_flags(run_cli, args, message):
    """They named the deployment's keys (keep_layers, train_batch_tokens, method lora, pp=1) to a flags user."""
    err = _one_line_error(*run_cli("simulate", "--model", LLAMA, "--rate", "1", "--requests", "20", *args)[::2])
    assert message in err
    assert "keep_layers" not in err and "train_batch_tokens" not in err


def test_trainer_errors_name_the_file_s_keys_for_a_deployment_file(run_cli, tmp_path):
    """The same checks on a --deployment file name its keys, where the file spells them."""
    group = {"role": "collocated", "hardware": "h100-sxm", "tp": 1}
    for block, message in (({"method": "lora", "reuse": "offload", "keep_layers": 40},
                            "online_training.keep_layers 40: "),
                           ({"method": "full"}, "lower online_training.train_batch_tokens, use online_training.method "
                                                "lora, online_training.reuse offload, or raise instances.0.tp")):
        path = tmp_path / "deployment.json"
        path.write_text(json.dumps({"model": LLAMA, "instances": [group], "online_training": block}))
        err = _one_line_error(*run_cli("simulate", "--deployment", str(path), "--rate", "1", "--requests", "20")[::2])
        assert message in err and "--" not in err.split("error: ", 1)[1].split(str(path))[-1]


def test_a_flag_built_deployment_equals_the_same_deployment_built_otherwise():
    """The flag names a deployment built from flags keeps for its errors are no part of it (equality, dumps)."""
    from phasewise.sim.api import deployment_from_flags

    flags = deployment_from_flags(model=LLAMA, online_training="lora")
    plain = build_deployment(flags.model_dump())
    assert flags == plain and flags.model_dump() == plain.model_dump()
    assert flags.field_label("online_training", "keep_layers") == "--keep-layers"
    assert plain.field_label("online_training", "keep_layers") == "online_training.keep_layers"


# --- second review: --out's timeline, one-token answers, trace notes, one SLO test, one summary helper ---------------

SIMULATE = ("simulate", "--model", LLADA, "--dllm", "fast-dllm")


def _trace(path, priority: bool = False):
    """A three-request trace (answers within a 1,024-token canvas), with a priority column where asked."""
    rows = [(0.0, 100, 20, 0), (1.0, 100, 20, 1), (2.0, 120, 20, 0)]
    head = "TIMESTAMP,ContextTokens,GeneratedTokens" + (",priority" if priority else "")
    path.write_text("\n".join([head, *(",".join(map(str, r if priority else r[:3])) for r in rows)]) + "\n")
    return path


def test_out_never_replaces_an_input_named_like_its_timeline(run_cli, tmp_path):
    """simulate --dllm --out DIR wrote DIR/timeline.csv over a --trace of that name: only requests.csv and
    summary.json were checked. Every file the run writes is now checked before the run, and nothing is written."""
    trace = _trace(tmp_path / "timeline.csv")
    before = trace.read_text()
    code, _, err = run_cli(*SIMULATE, "--trace", str(trace), "--out", str(tmp_path))
    err = _one_line_error(code, err)
    assert "(timeline.csv) would overwrite --trace" in err and "outputs never replace their inputs" in err
    assert trace.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["timeline.csv"]


def test_a_directory_in_the_timeline_s_place_is_refused_before_anything_is_written(run_cli, tmp_path):
    """A directory named DIR/timeline.csv failed only after requests.csv was written: now before the run."""
    (tmp_path / "out" / "timeline.csv").mkdir(parents=True)
    code, _, err = run_cli(*SIMULATE, "--trace", str(_trace(tmp_path / "t.csv")), "--out", str(tmp_path / "out"))
    assert "(timeline.csv): cannot write" in _one_line_error(code, err)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["timeline.csv"]


def test_write_records_checks_its_extra_tables_against_the_inputs(tmp_path):
    from phasewise.apps.simulate_view import write_records
    from phasewise.errors import PhasewiseError

    trace = _trace(tmp_path / "timeline.csv")
    with pytest.raises(PhasewiseError, match=r"\(timeline.csv\) would overwrite --trace"):
        write_records(None, {}, str(tmp_path), "csv", extra={"timeline": {"a": [1]}}, inputs={"--trace": str(trace)})


def _run(answers, mode="fast-dllm"):
    import numpy as np

    from phasewise.perf.dllm import DllmCost
    from phasewise.sim.dllm import simulate_dllm
    from phasewise.workload import Workload

    cm = CostModel(load_model(LLADA), load_hardware("h100-sxm"), load_quant("bf16"), load_engine("hf-eager"))
    n = len(answers)
    work = Workload(np.arange(n) * 100.0, np.full(n, 100), np.asarray(answers))  # apart: no queueing
    return simulate_dllm(decoding(mode, gen_length=128), DllmCost.of(cm), work)


def test_a_one_token_answer_has_no_tpot():
    """TPOT is (E2E - time to first block) / (answer - 1): a one-token answer has no gap between tokens. It got
    E2E - TTFB (2,699 ms at baseline, --gen-length 128) where the autoregressive path and vllm bench leave it out."""
    import numpy as np

    run = _run([1, 1, 40])
    tpot = run.tpot_s()
    assert np.isnan(tpot[:2]).all() and np.isfinite(tpot[2])
    assert tpot[2] == pytest.approx((run.finish_s[2] - run.first_block_s[2]) / 39)
    s = run.summary()["tpot_ms"]
    assert s["mean"] == pytest.approx(tpot[2] * 1e3) and s["p99"] == pytest.approx(tpot[2] * 1e3)
    assert all(np.isnan(v) for v in _run([1, 1]).summary()["tpot_ms"].values())


def test_the_cli_reports_no_tpot_for_one_token_answers(run_cli):
    code, out, err = run_cli(*SIMULATE[:3], "--dllm", "baseline", "--osl", "1", "--isl", "100", "--gen-length", "128",
                             "--block-length", "32", "--concurrency", "1", "--requests", "3", "--json")
    assert code == 0, err
    assert json.loads(out)["tpot_ms"] == {"mean": None, "p50": None, "p90": None, "p99": None}


def test_a_trace_s_priority_column_is_noted_as_on_the_autoregressive_path(run_cli, tmp_path):
    """--dllm with a trace's priority column said nothing; the autoregressive path notes it is ignored."""
    trace = str(_trace(tmp_path / "pt.csv", priority=True))
    code, out, err = run_cli(*SIMULATE, "--trace", trace)
    assert code == 0, err
    assert "note" in out and "its priority column is ignored" in " ".join(out.split())
    code, out, err = run_cli(*SIMULATE, "--trace", trace, "--trace-limit", "5", "--json")
    notes = json.loads(out)["notes"]
    assert code == 0 and len(notes) == 2 and "--trace-limit 5" in notes[0] and "priority column" in notes[1]
    code, out, _ = run_cli(*SIMULATE, "--trace", str(_trace(tmp_path / "plain.csv")), "--json")
    assert code == 0 and "notes" not in json.loads(out)


def test_plan_exempts_one_token_answers_from_tpot_as_slo_met_does(run_cli):
    """plan --dllm had its own SLO test, without slo_met's exemption of one-token answers from TPOT: --osl 1 was
    'no dLLM deployment meets the SLOs ... even unloaded'. It now ranks one (0.44 req/s on an H100)."""
    code, out, err = run_cli("plan", "--dllm", "fast-dllm", "--model", LLADA, "--hardware", "h100-sxm", "--gpus",
                             "1", "--isl", "200", "--osl", "1", "--slo-ttft-ms", "2000", "--slo-tpot-ms", "50",
                             "--batch-caps", "1", "--json")
    assert code == 0, err
    best = json.loads(out)["ranking"][0]
    assert best["goodput_rps"] > 0 and best["tpot_p90_ms"] is None


def test_attainment_is_slo_met_s():
    import numpy as np

    from phasewise.plan.dllm_plan import attainment
    from phasewise.sim.metrics import Slo, slo_met

    run = _run([1, 8, 40, 100])
    ttft_ms, tpot_ms = float(np.median(run.ttfb_s())) * 1e3, float(np.nanmedian(run.tpot_s())) * 1e3
    for limits in ((ttft_ms, tpot_ms), (1e9, 1e-9), (1e-9, 1e9), (1e9, 1e9)):
        met = slo_met(Slo(*limits), run.ttfb_s(), run.tpot_s(), np.nan, run.answer_tokens)
        assert attainment(run, *limits) == pytest.approx(float(np.mean(met)))
    assert attainment(run, 1e9, 1e-9) == pytest.approx(0.25)  # the one-token answer alone: no TPOT to miss


def test_one_latency_summary_helper():
    """sim/dllm.py kept a byte-for-byte copy of sim/metrics.py's percentile summary."""
    import phasewise.sim.dllm as dllm
    import phasewise.sim.metrics as metrics

    assert not hasattr(dllm, "_dist_ms") and dllm.dist_ms is metrics.dist_ms


# --- second review: plan resolves the engine as simulate does, the trainer's resident peak, validate's labels, -----
# --- a one-token TPOT's '-', the ODB checks' order ------------------------------------------------------------------

ODB_PLAN = ("plan", "--dllm", "odb", "--model", LLADA, "--hardware", "h100-sxm", "--gpus", "1")


def _ok_json(code: int, out: str, err: str) -> dict:
    assert code == 0, err
    return json.loads(out)


def test_plan_ranks_at_the_figures_simulate_gives_at_its_goodput_rate(run_cli):
    """plan --dllm costed --engine vllm with the bare vllm profile (load_engine), simulate --dllm with the preset as
    resolved for the chip (resolve_engine): 9.21 vs 8.19 ms a forward, plan's e2e mean 709 ms vs simulate's 533 ms
    at plan's own goodput rate. Both now resolve it in one place (plan/dllm_plan.py dllm_instance)."""
    plan = _ok_json(*run_cli(*ODB_PLAN, "--isl", "500", "--osl", "100", "--gen-length", "256", "--batch-caps", "1",
                             "--engine", "vllm", "--json"))
    row, = plan["ranking"]
    sim = _ok_json(*run_cli("simulate", "--model", LLADA, "--dllm", "odb", "--engine", "vllm", "--gen-length", "256",
                            "--rate", repr(row["goodput_rps"]), "--requests", "200", "--isl", "500", "--osl", "100",
                            "--json"))
    assert sim["engine"] == "vllm"
    assert row["e2e_mean_ms"] == pytest.approx(sim["e2e_ms"]["mean"], rel=1e-9)
    assert row["ttft_p90_ms"] == pytest.approx(sim["ttft_ms"]["p90"], rel=1e-9)
    assert row["tpot_p90_ms"] == pytest.approx(sim["tpot_ms"]["p90"], rel=1e-9)
    assert row["busy_fraction"] == pytest.approx(sim["instances"]["busy_fraction"], rel=1e-9)


@pytest.mark.parametrize("engine", ["trtllm", "vllm@0.12"])
def test_plan_takes_the_engines_simulate_takes(run_cli, engine):
    """`plan --dllm --engine trtllm` and `--engine vllm@0.12` were 'unknown engine'; simulate --dllm takes both."""
    plan = _ok_json(*run_cli(*ODB_PLAN, "--isl", "500", "--osl", "100", "--gen-length", "256", "--batch-caps", "1",
                             "--engine", engine, "--json"))
    assert plan["ranking"][0]["goodput_rps"] > 0


def test_plan_takes_one_engine_with_dllm(run_cli):
    err = _one_line_error(*run_cli(*ODB_PLAN, "--engine", "vllm,sglang", "--batch-caps", "1")[::2])
    assert "--engine takes one engine with --dllm" in err


def test_plan_leaves_out_a_cap_simulate_refuses(run_cli):
    """plan --dllm held every engine to a 0.9 memory fraction: it ranked cap 24 on sglang (whose own fraction on an
    H100 is 0.835) first, which simulate --dllm refuses (51,936 KV tokens needed, 46,028 fit)."""
    lengths = ("--isl", "1000", "--osl", "250")
    err = _one_line_error(*run_cli("simulate", "--model", LLADA, "--dllm", "odb", "--engine", "sglang", "--rate", "5",
                                   "--requests", "10", *lengths, "--batch-cap", "24")[::2])
    assert "does not fit" in err
    plan = _ok_json(*run_cli(*ODB_PLAN, "--engine", "sglang", *lengths, "--slo-ttft-ms", "5000", "--slo-tpot-ms",
                             "100", "--batch-caps", "16,24", "--json"))
    assert [r["batch_cap"] for r in plan["ranking"]] == [16]
    assert plan["left_out"] == [{"hardware": "h100-sxm", "batch_cap": 24}]
    code, _, err = run_cli("simulate", "--model", LLADA, "--dllm", "odb", "--engine", "sglang", "--rate", "5",
                           "--requests", "10", *lengths, "--batch-cap", "16", "--json")
    assert code == 0, err


def _trainer(run_cli, *args: str) -> dict:
    out = _ok_json(*run_cli("simulate", "--model", LLAMA, "--tp", "4", "--online-training", "full", "--json", *args))
    return out["policy"]["online_training"]


def test_the_trainer_s_peak_is_what_is_resident_together(run_cli):
    """Reuse keep, every request fed back: a step whose 7 samples' recordings were all skipped recomputes 7,700
    tokens (14.67 GiB of its own activations) while the buffer holds 21.34 GiB of other requests' recordings: ~36.0
    GiB resident. The peak was max(step, buffer) = 21.34 GiB and peak_over_reserved_bytes 0."""
    gib = 2 ** 30
    t = _trainer(run_cli, "--rate", "20", "--requests", "120", "--isl", "1000", "--osl", "100",
                 "--train-reuse-mode", "keep", "--feedback-share", "1")
    assert t["recording_skipped"] > 0
    # 21.34 GiB held + 7,700 x 2,046,208 B (TP4 bf16: every layer's saved activations and the head) = 36.0 GiB
    assert 34 < t["peak_activation_bytes"] / gib < 38
    over = t["weight_state_bytes"] + t["peak_activation_bytes"] - t["reserved_bytes"]
    assert over > 10 * gib and t["peak_over_reserved_bytes"] == pytest.approx(over)


def test_a_fully_recorded_run_stays_within_its_reservation(run_cli):
    t = _trainer(run_cli, "--rate", "6", "--requests", "300", "--isl", "161", "--osl", "338", "--train-reuse-mode",
                 "keep", "--feedback-share", "0.2")
    assert t["recording_skipped"] == 0 and t["steps"] > 0
    assert t["peak_over_reserved_bytes"] == 0.0
    assert t["weight_state_bytes"] + t["peak_activation_bytes"] <= t["reserved_bytes"]


def test_the_reservation_holds_the_head_s_log_probs_beside_the_buffer(run_cli):
    """keep's reservation was max(buffer, a batch's activations) = the 1.5-batch buffer: a step's head (its saved
    input and fp32 log-probs, 1.04 GiB a batch at TP4) was never reserved."""
    from phasewise.perf.training import head_saved_bytes_per_token, recording_bytes_per_token

    model, budget = load_model(LLAMA), 8192
    t = _trainer(run_cli, "--rate", "6", "--requests", "40", "--isl", "161", "--osl", "338", "--train-reuse-mode",
                 "keep", "--feedback-share", "0.2")
    buffer = 1.5 * budget * recording_bytes_per_token(model, tp=4)
    head_beyond_recording = budget * (head_saved_bytes_per_token(model, tp=4) - model.hidden_size * 2)
    assert head_beyond_recording == budget * (4096 * 2 + 128256 / 4 * 4)  # the LM head's input + fp32 log-probs
    assert t["reserved_bytes"] - t["weight_state_bytes"] == pytest.approx(buffer + head_beyond_recording)


def _fake_dllm_validate(*args, **kwargs):
    from phasewise.measure.dllm_check import DllmPoint

    points = [DllmPoint("block", 1, 32, 128, 32, 0.010, 0.010, 0.027, 0.027),
              DllmPoint("refresh", 1, 256, 0, 256, 0.050, 0.050, 0.120, 0.120)]
    return points, {"model": "small", "params": 1e6, "hardware_source": args[0], "engine": "hf-eager",
                    "unfitted_hardware": "cpu-local", "unfitted_engine": "hf-eager", "repeats": 1,
                    "host_allocator": "caching (test)"}


def _fake_train_reuse_validate(*args, **kwargs):
    from phasewise.measure.train_reuse import METRICS, TrainPoint

    times = {m: 0.01 for m in METRICS}
    point = TrainPoint(1, 64, times, {m: 0.025 for m in METRICS}, {m: 0.025 for m in METRICS}, 1e6, 1e6, times,
                       {m: 0.0 for m in METRICS}, {m: 0.0 for m in METRICS})
    return [point], {"model": "small", "params": 1e6, "layers": 1, "hidden": 128, "method": "full", "threads": 1,
                     "host_allocator": "caching (test)", "clock": "thread CPU time", "hardware": "cpu-local",
                     "engine": "hf-eager", "unfitted": "cpu-local/hf-eager", "measure_wall_s": 0.0}


def _fake_validate(*args, **kwargs):
    from phasewise.measure.validate import Point

    return [Point("prefill", 1, 64, 0.01, 0.025, 0.025), Point("decode", 1, 64, 0.001, 0.0025, 0.0025)], {
        "model": "small", "params": 1e6, "hardware": "cpu-local", "engine": "hf-eager",
        "unfitted_hardware": "cpu-local", "unfitted_engine": "hf-eager", "host_allocator": "caching (test)"}


@pytest.mark.parametrize("mode", ["--dllm", "--train-reuse", None])
def test_validate_does_not_call_a_catalog_entry_calibrated(run_cli, monkeypatch, tmp_path, mode):
    """validate --dllm / --train-reuse (and the plain grid) labelled the catalog's cpu-local 'calibrated' beside the
    same entry's 'unfitted' column; a catalog key is now named as such, not calibrated, and a file stays
    'calibrated' (the README's calibrated entry: calibrate's YAML)."""
    monkeypatch.setattr("phasewise.measure.dllm_check.dllm_validate", _fake_dllm_validate)
    monkeypatch.setattr("phasewise.measure.train_reuse.train_reuse_validate", _fake_train_reuse_validate)
    monkeypatch.setattr("phasewise.measure.validate.validate", _fake_validate)
    monkeypatch.setenv("COLUMNS", "400")
    flags = (mode,) if mode else ()
    code, out, err = run_cli("validate", *flags, "--hardware", "cpu-local", "--quick")
    assert code == 0, err
    words = " ".join(out.split())
    assert "catalog cpu-local (not calibrated)" in words and "calibrated vs" not in words
    assert "calibrated;" not in words and "|error| calibrated" not in words
    assert "is a catalog entry, not calibrated here" in words
    hw = tmp_path / "hw.yaml"
    hw.write_text("hardware: {}\n")
    code, out, err = run_cli("validate", *flags, "--hardware", str(hw), "--quick")
    assert code == 0, err
    words = " ".join(out.split())
    assert "not calibrated" not in words and "calibrated" in words
    code, out, err = run_cli("validate", *flags, "--hardware", "cpu-local", "--quick", "--json")
    assert code == 0, err
    assert json.loads(out)["info"]["hardware_calibrated"] is False


def test_a_one_token_tpot_prints_a_dash_as_the_autoregressive_path_does(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_cli("simulate", "--model", LLADA, "--dllm", "odb", "--gen-length", "256", "--concurrency",
                             "1", "--requests", "3", "--isl", "500", "--osl", "1")
    assert code == 0, err
    assert "nan" not in out
    row = next(line for line in out.splitlines() if "TPOT after the first block" in line)
    assert row.count("-") >= 4
    assert "TPOT: - (no request produced a second token: every answer here is one token long)" in out
    code, out, err = run_cli(*ODB_PLAN, "--isl", "500", "--osl", "1", "--gen-length", "256", "--batch-caps", "1")
    assert code == 0, err
    assert "nan" not in out


def test_odb_forward_checks_give_their_times_in_the_title_s_order(run_cli):
    """'1024-token forward vs 512-token forward' explained '28.5 ms vs 39.9 ms' (28.5 ms is the 512-token one)."""
    import re

    code, out, err = run_cli("reproduce", "odb-dllm", "--json")
    assert code in (0, 1), err  # 1: a check outside its band (the report says which), not a failure to run
    checks = json.loads(out)["checks"]
    forward = [c for c in checks if re.search(r"\d+-token forward vs \d+-token forward", c["name"])]
    assert len(forward) == 4
    for c in forward:
        first, second = (float(x) for x in re.search(r"([\d.]+) ms vs ([\d.]+) ms", c["why"]).groups())
        assert first / second == pytest.approx(c["phasewise"], rel=5e-3), c["why"]
        device = re.search(r"the device's ([\d.]+) / ([\d.]+) ms; on the device alone ([\d.]+)x", c["why"])
        if device:
            assert float(device[1]) / float(device[2]) == pytest.approx(float(device[3]), rel=2e-2), c["why"]
