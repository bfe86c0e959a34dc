"""Launch scripts let the engine run a checkpoint's own code only where its config.json needs it: the model_types no
transformers release registers get each engine's trust flag (apps/data/remote_code.yaml, apps/remote_code.py), those
only transformers 5 registers a comment line, the rest neither."""

import json

import pytest

from phasewise.apps.launch import launch_commands
from phasewise.apps.launch_args import engine_flags
from phasewise.apps.remote_code import TRUST_FLAG, remote_code_args, remote_code_types
from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import build_deployment
from phasewise.specs.hf_config import SUPPORTED_TYPES
from phasewise.specs.model_catalog import checkpoint_model_type

ENGINES = ("vllm", "sglang", "trtllm")


def _command(model: str, engine: str, tp: int = 8):
    dep = build_deployment({"model": model, "instances": [{"hardware": "b200", "tp": tp, "engine": engine}]})
    (cmd,), _, _ = launch_commands(dep)
    return cmd


@pytest.mark.parametrize("engine", ENGINES)
def test_a_checkpoint_only_its_own_code_reads_gets_the_engines_trust_flag(engine):
    flag = TRUST_FLAG[engine]
    assert flag in engine_flags()[engine]["flags"]  # a published argument of that engine
    for model, model_type in (("nvidia/Llama-3_3-Nemotron-Super-49B-v1", "nemotron-nas"),
                              ("moonshotai/Kimi-K2-Instruct", "kimi_k2")):
        cmd = _command(model, engine)
        assert cmd.argv.count(flag) == 1
        assert any(f"model_type '{model_type}'" in c and "own configuration code" in c for c in cmd.comments)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_type_transformers_reads_runs_no_remote_code(engine):
    cmd = _command("meta-llama/Llama-3.1-8B", engine)
    assert not any("trust" in arg for arg in cmd.argv)
    assert not any("model_type" in c for c in cmd.comments)
    new = _command("Qwen/Qwen3.5-397B-A17B", engine)  # registered from transformers 5 on: a comment, no flag
    assert not any("trust" in arg for arg in new.argv)
    assert any("transformers 4.x" in c for c in new.comments)


def test_the_checkpoints_own_model_type_is_read_not_its_language_models(tmp_path):
    wrapper = tmp_path / "config.json"
    wrapper.write_text(json.dumps({"model_type": "InternVL_Chat", "llm_config": {"model_type": "qwen2"}}))
    assert checkpoint_model_type(str(wrapper)) == "internvl_chat"
    argv, notes = remote_code_args(str(wrapper), "sglang")
    assert argv == ["--trust-remote-code"] and len(notes) == 1
    assert checkpoint_model_type("meta-llama/Llama-3.1-8B") == "llama"
    with pytest.raises(PhasewiseError, match="model"):
        checkpoint_model_type("no-such-model")


def test_the_lists_name_parsed_types_once():
    types = remote_code_types()
    remote, newer = set(types["remote_code"]), set(types["transformers_5"])
    assert remote and newer and not remote & newer
    assert remote | newer <= set(SUPPORTED_TYPES)
    assert len(types["remote_code"]) == len(remote) and len(types["transformers_5"]) == len(newer)


def test_the_remote_list_is_what_the_installed_transformers_does_not_register():
    """Where transformers 5.25.0 (the release the list was read from) is installed, its registry agrees."""
    transformers = pytest.importorskip("transformers")
    if transformers.__version__ != "5.25.0":
        pytest.skip(f"transformers {transformers.__version__}: the lists were read from 5.25.0")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    unregistered = {t for t in SUPPORTED_TYPES if t not in CONFIG_MAPPING_NAMES}
    assert unregistered == set(remote_code_types()["remote_code"])
    assert set(remote_code_types()["transformers_5"]) <= set(CONFIG_MAPPING_NAMES)
