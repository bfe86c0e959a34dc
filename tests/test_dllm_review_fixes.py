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
