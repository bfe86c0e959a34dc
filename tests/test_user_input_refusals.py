"""Users' files and flags refused in one line where they had been read silently (an outside review's findings,
each reproduced first): a deployment file without its model or hardware, deployment flags typed beside
--deployment at their defaults, flag errors named by the deployment's field paths, a zero --decode-tp taken as
unset, config.json shape fields of the wrong type, a chip's parts without a process node, an idle power above the
TDP, a CSV trace row with extra fields, and the twin's infinite --speed and out-of-vocabulary token ids."""

import json

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import load_deployment
from phasewise.specs.catalog import packaged

M = "meta-llama/Llama-3.1-8B"


def _one_line(code: int, err: str) -> bool:
    return code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("text, field", [
    ("instances:\n  - {role: collocated, hardware: h100-sxm}\n", "model: required"),
    (f"model: {M}\ninstances:\n  - {{role: collocated, tp: 1}}\n", "instances.0.hardware: required"),
    (f"model: {M}\ninstances:\n  - {{role: prefill, hardware: h100-sxm}}\n  - {{role: decode}}\n",
     "instances.1.hardware: required"),
])
def test_a_deployment_file_names_its_model_and_hardware(tmp_path, run_cli, text, field):
    """The file had run Llama-3.1-8B on an H100 without saying so (the Deployment's defaults serve the API)."""
    path = tmp_path / "dep.yaml"
    path.write_text(text)
    with pytest.raises(PhasewiseError, match=field):
        load_deployment(str(path))
    code, _, err = run_cli("simulate", "--deployment", str(path), "--requests", "3")
    assert _one_line(code, err) and field in err


@pytest.mark.parametrize("flag, value", [("--engine", "vllm"), ("--tp", "1"), ("--model", M),
                                         ("--hardware", "h100-sxm"), ("--router", "least_outstanding")])
def test_a_deployment_flag_typed_at_its_default_beside_a_file_is_refused(tmp_path, run_cli, flag, value):
    """Compared with its default, a typed default looked like no flag: `--engine vllm` beside an SGLang file ran
    SGLang, exit 0. Typed, it is refused by name as any other value is."""
    path = tmp_path / "dep.yaml"
    path.write_text(f"model: {M}\ninstances:\n  - {{role: collocated, hardware: h100-sxm, engine: sglang}}\n")
    code, _, err = run_cli("simulate", "--deployment", str(path), "--rate", "1", "--requests", "3", flag, value)
    assert _one_line(code, err) and f"{flag} cannot be combined with --deployment" in err
    code, out, _ = run_cli("simulate", "--deployment", str(path), "--rate", "1", "--requests", "3")
    assert code == 0 and "3/3 requests" in out


@pytest.mark.parametrize("args, named", [
    (("--replicas", "0"), "--replicas: Input should be greater than or equal to 1"),
    (("--tp", "0"), "--tp: Input should be greater than or equal to 1"),
    (("--router", "foo"), "--router: Input should be 'round_robin'"),
    (("--arch", "disagg", "--prefill-workers", "1", "--decode-workers", "1", "--decode-tp", "0"),
     "--decode-tp / --tp: Input should be greater than or equal to 1"),
])
def test_deployment_flag_errors_name_the_flag(run_cli, args, named):
    """They named the deployment's field paths (instances.0.replicas); --decode-tp 0 was taken as unset (the
    decode group ran at --tp) and is refused now."""
    code, _, err = run_cli("simulate", "--rate", "4", "--requests", "5", *args)
    assert _one_line(code, err) and named in err and "instances." not in err


MISTRAL = {"model_type": "mistral", "hidden_size": 5120, "num_attention_heads": 32, "num_key_value_heads": 8,
           "head_dim": 128, "num_hidden_layers": 40, "intermediate_size": 32768, "vocab_size": 131072,
           "max_position_embeddings": 32768, "hidden_act": "silu", "tie_word_embeddings": False}


@pytest.mark.parametrize("field, value, words", [
    ("num_key_value_heads", True, "must be a positive integer (got True)"),  # read as 1: a KV 8x too small
    ("head_dim", True, "must be a positive integer (got True)"),
    ("intermediate_size", 2.5, "must be a non-negative integer (got 2.5)"),
    ("vocab_size", True, "must be a positive integer (got True)"),
    ("num_key_value_heads", 0, "must be a positive integer (got 0)"),
    ("tie_word_embeddings", "yes", "must be true or false (got 'yes')"),
])
def test_config_shape_fields_of_the_wrong_type_are_refused(tmp_path, run_cli, field, value, words):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MISTRAL))
    code, out, _ = run_cli("estimate", "--model", str(path), "--hardware", "h200-sxm")
    assert code == 0 and "160.0 KiB/token" in out  # the valid file: 40 layers x 2 x 8 heads x 128 x 2 B
    path.write_text(json.dumps(dict(MISTRAL, **{field: value})))
    code, _, err = run_cli("estimate", "--model", str(path), "--hardware", "h200-sxm")
    assert _one_line(code, err) and f"field {field} {words}" in err


def _parts_chip() -> dict:
    from phasewise.specs.hardware import load_hardware

    key = next(k for k, v in packaged("hardware_specs.yaml")["hardware"].items() if v.get("parts"))
    return load_hardware(key).model_dump(mode="json", exclude={"key"})


def test_a_chip_from_parts_names_its_process_node(tmp_path, run_cli):
    """Without it the chip was costed as N5 (area, die cost and power follow the node)."""
    entry = _parts_chip()
    del entry["parts"]["process_node"]
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(entry))
    code, _, err = run_cli("estimate", "--hardware", str(path))
    assert _one_line(code, err) and "process_node" in err


def test_an_idle_power_above_the_tdp_is_refused(tmp_path, run_cli):
    entry = dict(packaged("hardware_specs.yaml")["hardware"]["h100-sxm"], idle_w=900)
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(entry))
    code, _, err = run_cli("estimate", "--hardware", str(path))
    assert _one_line(code, err) and "idle_w (900 W) must be at most tdp_w (700 W)" in err


def test_a_csv_trace_row_with_more_fields_than_the_header_is_refused(tmp_path, run_cli):
    """A row with fewer fields was refused, one with more read with its extra field dropped."""
    path = tmp_path / "t.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,374,44\n0.5,374,44,9\n")
    code, _, err = run_cli("simulate", "--trace", str(path))
    assert _one_line(code, err) and "line 3: 4 fields, more than the header's 3 columns" in err
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,374,44\n0.5,374,44\n")
    code, out, _ = run_cli("simulate", "--trace", str(path))
    assert code == 0 and "2/2 requests" in out


def test_the_twin_refuses_an_infinite_speed():
    """--speed inf started a twin whose /metrics latency sums were all nan."""
    from phasewise.apps.twin_live import LiveSim
    from phasewise.sim.deployment import collocated

    with pytest.raises(PhasewiseError, match="--speed must be a finite number > 0"):
        LiveSim(collocated(M, "h100-sxm"), speed=float("inf"))


def test_the_twin_refuses_token_ids_outside_the_vocabulary():
    """vLLM answers 400 'Token id ... is out of vocabulary'; the twin had served them."""
    import httpx
    from conftest import serving

    from phasewise.apps.tokenizer import Tokenizer
    from phasewise.apps.twin import create_app
    from phasewise.apps.twin_live import LiveSim
    from phasewise.sim.deployment import collocated

    live = LiveSim(collocated(M, "h100-sxm"), speed=1000.0)
    vocab = live.model.vocab_size
    with serving(create_app(live, M, Tokenizer())) as url:
        for ids in ([vocab, 5], [-5, 5]):
            res = httpx.post(f"{url}/v1/completions", json={"model": M, "prompt": ids, "max_tokens": 1}, timeout=30)
            assert res.status_code == 400 and "out of vocabulary" in res.json()["error"]["message"]
            assert res.json()["error"]["param"] == "prompt"
        res = httpx.post(f"{url}/v1/completions", json={"model": M, "prompt": [vocab - 1, 0], "max_tokens": 1},
                         timeout=30)
        assert res.status_code == 200 and res.json()["usage"]["prompt_tokens"] == 2
