"""specs/hf_config.py and specs/engines.py split along their seams (the model_type groupings, the Llama-style parser
and the field refusals; the knob checks, EngineConfig and its build, the generic caps, DeepEP's choice): every name
other code imports from the original modules still comes from there, as the same object, and a patch on
specs.engines.load_engine (benchmarks/validate_serving.py, validate_concurrency.py) still reaches resolve_engine."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from phasewise.specs import load_hardware

# name -> the module it now lives in, for every public name the old specs/engines.py defined
ENGINE_NAMES = {
    "engine_caps": ("CAP_KNOBS", "PER_RANK_KNOBS", "cap_knob", "caps_per_rank", "engine_knobs", "graph_knobs",
                    "instance_seqs", "knob_values", "rank_share"),
    "engine_config": ("HICACHE_WRITES", "SCHEDULERS", "SGLANG_DP_ATTENTION_SOURCE", "SGLANG_DP_CONSERVATIVENESS",
                      "SGLANG_REQUEST_POOL", "EngineConfig", "memory_fraction_of", "sglang_request_pool"),
    "engine_deepep": ("DEEPEP_BUFFERS", "DEEPEP_CHOICE", "DEEPEP_KNOBS", "deepep_choice", "deepep_fields",
                      "takes_deepep"),
    "engine_knob_checks": ("KNOB_CHOICES", "KNOB_RANGES", "KNOB_TYPES"),
    "engines": ("ENTRY_POINTS", "GIB", "MAIN_PRESETS", "default_seq_cap", "engine_names", "resolve_engine",
                "role_knobs", "unknown_engine"),
}
HF_NAMES = {
    "hf_config": ("SUPPORTED_TYPES", "from_hf_config", "NON_FINITE_FIELDS", "MTP_FIELDS", "mtp_module_count",
                  "CONFIG_CLASS_DEFAULTS", "ENCODERS"),
    "hf_families": ("LLAMA_STYLE_TYPES", "LATENT_ATTENTION_TYPES", "TEXT_WRAPPER_TYPES", "NOT_MODELLED"),
    "hf_llama_style": ("QK_NORM_TYPES", "MODELLED_ACTS", "TIED_BY_DEFAULT", "llama_style_spec"),
    "hf_refusals": ("LATENT_FIELDS", "DENSE_TYPES", "POSITIVE_FIELDS", "refuse_mistyped_fields",
                    "refuse_unread_fields"),
}


@pytest.mark.parametrize("original, homes", [("engines", ENGINE_NAMES),
                                             ("hf_config", {"hf_config": HF_NAMES["hf_config"]})])
def test_the_original_modules_still_export_what_others_import(original, homes):
    module = importlib.import_module(f"phasewise.specs.{original}")
    for home, names in homes.items():
        new = importlib.import_module(f"phasewise.specs.{home}")
        for name in names:
            assert getattr(module, name) is getattr(new, name), f"{original}.{name}"


def test_each_moved_name_lives_in_its_new_module():
    for home, names in HF_NAMES.items():
        module = importlib.import_module(f"phasewise.specs.{home}")
        assert all(hasattr(module, name) for name in names), home


@pytest.mark.parametrize("name", ["hf_config", "hf_families", "hf_llama_style", "hf_refusals", "engines",
                                  "engine_caps", "engine_config", "engine_deepep", "engine_knob_checks"])
def test_each_file_stays_a_few_hundred_lines(name):
    path = Path(importlib.util.find_spec(f"phasewise.specs.{name}").origin)
    assert len(path.read_text().splitlines()) < 450


def test_a_patch_on_engines_load_engine_still_reaches_resolve_engine(monkeypatch):
    engines = importlib.import_module("phasewise.specs.engines")
    real = engines.load_engine
    monkeypatch.setattr(engines, "load_engine",
                        lambda name: real(name).model_copy(update={"iteration_overhead_s": 0.123}))
    assert engines.resolve_engine("vllm", load_hardware("h200-sxm")).profile.iteration_overhead_s == 0.123
