"""reproduce --set variations (review round 8, "setvars"): a diffusion LM is refused in one line naming the --set key
by every scenario that decodes token by token (and by device-cloud / edge); adrenaline's and fireq's messages follow
the figures when --set moves them (nothing offloaded; a decode ratio that stays flat); hat's acceptance bound is a
one-line error naming --set acceptance."""

import pytest

LLADA = "GSAI-ML/LLaDA-8B-Instruct"


@pytest.mark.parametrize("scenario, key", [("hat", "model"), ("jupiter", "model"), ("halo", "models"),
                                           ("fireq", "model"), ("alchemist", "model"), ("ascendra", "model"),
                                           ("adrenaline", "model"), ("bestserve", "model"), ("spad", "model")])
def test_a_diffusion_lm_is_refused_naming_the_set_key(run_cli, scenario, key):
    code, out, err = run_cli("reproduce", scenario, "--set", f"{key}={LLADA}")
    text = (out + err).strip()
    assert code != 0 and "Traceback" not in text and len(text.splitlines()) == 1, text
    assert f"reproduce {scenario}: --set {key}: needs an autoregressive model; {LLADA} is a diffusion LM" in text
    assert "--dllm baseline" not in text  # reproduce has no --dllm flag to give


@pytest.mark.parametrize("command", ["device-cloud", "edge"])
def test_device_splits_refuse_a_diffusion_lm(run_cli, command):
    code, out, err = run_cli(command, "--model", LLADA)
    assert code != 0 and f"model '{LLADA}' is a diffusion LM" in out + err and "Traceback" not in out + err


def test_adrenaline_says_nothing_was_offloaded_where_nothing_was(run_cli):
    code, out, err = run_cli("reproduce", "adrenaline", "--set", "model=Qwen/Qwen3-8B", "--set", "requests=600")
    line = next(t for t in out.splitlines() if "throughput_gain:" in t)
    assert "no request was offloaded at that rate" in line and "grows from" not in line
    assert "the controller was never asked" in line
    capacity = next(t for t in out.splitlines() if "prefill_hbm_capacity:" in t)
    assert "nothing offloaded, so nothing more held" in capacity


def test_fireq_decode_message_follows_a_flat_ratio(run_cli):
    code, out, err = run_cli("reproduce", "fireq", "--set", "model=Qwen/Qwen3-0.6B")
    line = next(t for t in out.splitlines() if "batch-1 decode: FFN speedup near 1:" in t)
    assert "stays memory-bound" in line and "grows with batch" not in line
    code, out, err = run_cli("reproduce", "fireq")  # the default Llama-3-8B: 1.006 -> 1.06, growth
    line = next(t for t in out.splitlines() if "batch-1 decode: FFN speedup near 1:" in t)
    assert "grows with batch to 1.06x at 64" in line


def test_hat_acceptance_of_1_is_a_one_line_error_naming_the_set_key(run_cli):
    code, out, err = run_cli("reproduce", "hat", "--set", "acceptance=1")
    text = (out + err).strip()
    assert code != 0 and text.splitlines() == [text] and "reproduce hat: --set acceptance:" in text
