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
