"""Catalogs: every entry loads, parameter counts match the published sizes, errors are one line."""

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged
from phasewise.specs.hardware import hardware_names
from phasewise.specs.quant import quant_names

REQUIRED_MODELS = [
    "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-70b-hf",
    "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B",
    "meta-llama/Llama-3.1-70B-Instruct", "Qwen/Qwen3-8B", "Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-235B-A22B", "mistralai/Mixtral-8x7B-v0.1", "lmsys/vicuna-7b-v1.3", "facebook/opt-13b",
    "GSAI-ML/LLaDA-8B-Instruct",
]
REQUIRED_HARDWARE = ["a100-sxm-80gb", "h100-sxm", "h100-pcie", "h200-sxm", "b200", "l40s", "a6000",
                     "jetson-agx-orin", "cpu-local"]


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_required_models_load(name):
    assert load_model(name).num_layers > 0


@pytest.mark.parametrize("key", list(packaged("models.yaml")["models"]))
def test_every_catalog_model_loads_with_a_source(key):
    entry = packaged("models.yaml")["models"][key]
    assert entry["source"].startswith("https://huggingface.co/")
    load_model(key)


@pytest.mark.parametrize(
    "name, total_b, active_b",
    [
        ("meta-llama/Llama-2-7b-hf", 6.74, 6.74),
        ("meta-llama/Llama-2-70b-hf", 68.98, 68.98),
        ("meta-llama/Llama-3.1-8B", 8.03, 8.03),
        ("meta-llama/Llama-3.1-70B", 70.55, 70.55),
        ("Qwen/Qwen3-8B", 8.19, 8.19),
        ("Qwen/Qwen3-32B", 32.76, 32.76),
        ("Qwen/Qwen3-30B-A3B", 30.53, 3.35),
        ("Qwen/Qwen3-235B-A22B", 235.09, 22.2),
        ("mistralai/Mixtral-8x7B-v0.1", 46.70, 12.88),
        ("facebook/opt-13b", 12.85, 12.85),
        ("GSAI-ML/LLaDA-8B-Instruct", 8.02, 8.02),
        # the models AIConfigurator serves by default (tests/test_serving_catalog_models.py: the rest of their checks)
        ("Qwen/Qwen3-0.6B", 0.596, 0.596),
        ("Qwen/Qwen3-1.7B", 1.72, 1.72),
        ("Qwen/Qwen3-4B", 4.02, 4.02),
        ("Qwen/Qwen3-14B", 14.77, 14.77),
        ("Qwen/Qwen3-Coder-480B-A35B-Instruct", 480.2, 35.5),
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct", 30.53, 3.35),
        ("Qwen/Qwen3.5-27B", 26.90, 26.90),
        ("Qwen/Qwen3.5-35B-A3B", 34.66, 3.45),
        ("Qwen/Qwen3.5-122B-A10B", 122.1, 9.77),
        ("MiniMaxAI/MiniMax-M2.7", 228.7, 11.03),
        ("XiaomiMiMo/MiMo-7B-Base", 7.62, 7.62),
        ("nvidia/Nemotron-H-56B-Base-8K", 56.32, 56.32),
        ("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16", 120.7, 12.77),
    ],
)
def test_parameter_counts_match_published_sizes(name, total_b, active_b):
    m = load_model(name)
    assert m.total_params / 1e9 == pytest.approx(total_b, rel=0.01)
    assert m.active_params / 1e9 == pytest.approx(active_b, rel=0.02)


def test_architecture_details():
    q = load_model("Qwen/Qwen3-32B")
    assert (q.num_heads, q.num_kv_heads, q.head_dim, q.hidden_size) == (64, 8, 128, 5120)
    assert q.q_size == 8192  # head_dim x heads differs from hidden_size
    assert q.sliding_window is None  # use_sliding_window: false
    mix = load_model("mistralai/Mixtral-8x7B-v0.1")
    assert (mix.num_experts, mix.experts_per_token, mix.num_moe_layers) == (8, 2, 32)
    opt = load_model("facebook/opt-13b")
    assert not opt.mlp_gated and opt.norm == "layer" and opt.tie_embeddings
    llada = load_model("GSAI-ML/LLaDA-8B-Instruct")
    assert not llada.causal
    assert load_model("mistralai/Mistral-7B-v0.1").sliding_window == 4096


def test_aliases_and_case_resolve_to_the_same_architecture():
    base = load_model("meta-llama/Llama-3.1-8B")
    for alias in ("meta-llama/Llama-3.1-8B-Instruct", "META-LLAMA/LLAMA-3.1-8B-INSTRUCT", "Llama-3.1-8B-Instruct"):
        assert load_model(alias).model_dump(exclude={"name"}) == base.model_dump(exclude={"name"})


def test_config_json_by_path(tmp_path):
    cfg = packaged("models.yaml")["models"]["Qwen/Qwen3-8B"]["config"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    m = load_model(str(path))
    assert m.total_params == load_model("Qwen/Qwen3-8B").total_params


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "malformed"),
        ('{"model_type": "llama", "hidden_size": 4096}', "missing field num_attention_heads"),
        ('{"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": -2,'
         ' "vocab_size": 10, "intermediate_size": 10}', "num_hidden_layers must be a positive integer"),
        ('{"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 0, "num_hidden_layers": 2,'
         ' "vocab_size": 10, "intermediate_size": 10}', "num_attention_heads must be a positive integer"),
        ('[1, 2]', "mapping"),
    ],
)
def test_bad_config_json_is_one_line(tmp_path, text, match):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(PhasewiseError, match=match) as err:
        load_model(str(path))
    assert "\n" not in str(err.value)


def test_unknown_model_suggests_close_names():
    with pytest.raises(PhasewiseError, match="did you mean.*Llama-3.1-8B"):
        load_model("meta-llama/Llama-3.1-8b-instrct")


def test_unknown_hardware_suggests_the_name_it_extends_first():
    with pytest.raises(PhasewiseError, match=r"unknown hardware 'b200-sxm'; did you mean b200, "):
        load_hardware("b200-sxm")


@pytest.mark.parametrize("key", REQUIRED_HARDWARE)
def test_required_hardware_loads(key):
    assert load_hardware(key).memory_bandwidth_bytes_per_s > 0


@pytest.mark.parametrize("key", hardware_names())
def test_every_hardware_figure_has_a_source(key):
    entry = packaged("hardware_specs.yaml")["hardware"][key]
    for group in ("peak_flops", "memory", "interconnect", "tdp_w", "price_per_hour_usd"):
        assert entry["sources"].get(group), f"{key}: no source for {group}"


def test_hardware_peaks_are_consistent_with_papers_constants():
    h100 = load_hardware("h100-sxm")
    assert h100.peak_flops["bf16"] == pytest.approx(989e12, rel=0.01)
    assert h100.peak_flops["fp8"] == pytest.approx(1979e12, rel=0.01)
    assert h100.memory_bandwidth_bytes_per_s == pytest.approx(3.35e12)
    assert "fp8" not in load_hardware("a100-sxm-80gb").peak_flops
    assert load_hardware("h200-sxm").memory_bandwidth_bytes_per_s == pytest.approx(4.8e12)


def test_hardware_without_a_compute_path_is_a_clear_error():
    with pytest.raises(PhasewiseError, match="no fp8 compute path"):
        load_hardware("a100-sxm-80gb").peak("fp8")


def test_user_hardware_yaml(tmp_path):
    entry = dict(packaged("hardware_specs.yaml")["hardware"]["h100-sxm"])
    entry["peak_flops"] = {"bf16": 1.92e15}
    entry["memory_bandwidth_bytes_per_s"] = 2.048e12
    entry["efficiency"] = {"gemm_efficiency_max": 0.5}
    import yaml

    path = tmp_path / "prefill-chip.yaml"
    path.write_text(yaml.safe_dump({"hardware": {"spad-prefill": entry}}))
    hw = load_hardware(str(path))
    assert hw.key == "spad-prefill" and hw.peak("bf16") == 1.92e15
    assert hw.efficiency.gemm_efficiency_max == 0.5
    # Unspecified efficiencies come from the GPU class defaults, not from the entry it was copied from.
    assert hw.efficiency.memory_efficiency_max == packaged("efficiency.yaml")["defaults"]["gpu"]["memory_efficiency_max"]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda e: e.pop("memory_bandwidth_bytes_per_s"), "memory_bandwidth_bytes_per_s"),
        (lambda e: e.update(memory_capacity_bytes=-1), "memory_capacity_bytes"),
        (lambda e: e["peak_flops"].update(bf17=1.0), "peak_flops.bf17"),
        (lambda e: e.update(kind="quantum"), "kind 'quantum'"),
        (lambda e: e.update(efficiency={"gemm_efficiency_max": 3}), "gemm_efficiency_max"),
        # benchmarks/fuzz_configs.py found these failing with a TypeError instead of naming the field
        (lambda e: e.update(kind=[]), r"kind \[\] is not one of gpu"),
        (lambda e: e.update(peak_flops=2), "peak_flops must be a mapping of dtype: FLOP/s \\(got 2\\)"),
        (lambda e: e.update(efficiency=3), "efficiency must be a mapping of constant: value"),
    ],
)
def test_bad_hardware_yaml_names_the_field(tmp_path, mutate, match):
    import copy

    import yaml

    entry = copy.deepcopy(packaged("hardware_specs.yaml")["hardware"]["h100-sxm"])
    mutate(entry)
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump({"hardware": {"mine": entry}}))
    with pytest.raises(PhasewiseError, match=match) as err:
        load_hardware(str(path))
    assert "\n" not in str(err.value)


def test_malformed_hardware_yaml(tmp_path):
    path = tmp_path / "hw.yaml"
    path.write_text("hardware: {a: [1, 2\n")
    with pytest.raises(PhasewiseError, match="malformed"):
        load_hardware(str(path))


@pytest.mark.parametrize("name", quant_names())
def test_every_quant_scheme_loads(name):
    q = load_quant(name)
    assert q.weight_bytes_per_param > 0


def test_quant_bytes():
    assert load_quant("bf16").weight_bytes_per_param == 2
    assert load_quant("fp8").weight_bytes_per_param == 1
    assert load_quant("w4a16").weight_bytes_per_param == pytest.approx(0.5 + 2.5 / 128)
    assert load_quant("w4a8").kv_dtype == "int4"
    assert load_quant("w4a8").kv_bytes_per_element == pytest.approx(0.5 + 2 / 128)
    assert load_quant("bf16", "fp8").kv_bytes_per_element == 1
    with pytest.raises(PhasewiseError, match="allowed"):
        load_quant("bf16", "fp3")
    with pytest.raises(PhasewiseError, match="unknown precision"):
        load_quant("fp9")


def test_engines_load():
    for name in ("vllm", "vllm-2023", "trtllm-0.5", "ideal"):
        assert load_engine(name).iteration_overhead_s >= 0
    with pytest.raises(PhasewiseError, match="unknown engine"):
        load_engine("tgi-2019")


# --- Blackwell entries and the system names of ../shared/measured/blackwell_serving.csv ----------------

MEASURED_SYSTEMS = {"b200_sxm": "b200", "b300_sxm": "b300", "gb200": "gb200", "gb300": "gb300"}
NEW_BLACKWELL = ["b300", "gb200", "gb300"]


@pytest.mark.parametrize("system, key", list(MEASURED_SYSTEMS.items()))
def test_measured_system_names_resolve_to_catalog_entries(system, key):
    assert load_hardware(system).key == key
    assert load_hardware(system.upper()).key == key  # aliases are case-insensitive like keys


# AIConfigurator's China-market Hopper systems (its systems/*.yaml names): the same GH100 family
AIC_HOPPER = {"h800_sxm": "h800-sxm", "h20_sxm": "h20", "h20_3e": "h20-3e", "h20e_sxm": "h20-3e"}


@pytest.mark.parametrize("system, key", list(AIC_HOPPER.items()))
def test_aiconfigurator_hopper_system_names_resolve(system, key):
    hw = load_hardware(system)
    assert hw.key == key and "fp4" not in hw.peak_flops
    h100 = load_hardware("h100-sxm")
    assert hw.efficiency.kernel_launch_s == h100.efficiency.kernel_launch_s  # h100-sxm's constants, transferred
    assert hw.efficiency.gemm_half_rows == h100.efficiency.gemm_half_rows


def test_h800_is_h100_but_for_its_nvlink():
    h800, h100 = load_hardware("h800_sxm"), load_hardware("h100-sxm")
    assert h800.peak_flops == h100.peak_flops and h800.memory_bandwidth_bytes_per_s == h100.memory_bandwidth_bytes_per_s
    assert h800.interconnect.intra_node_bandwidth_bytes_per_s == 200e9 < h100.interconnect.intra_node_bandwidth_bytes_per_s


def test_unknown_hardware_alias_is_still_an_error():
    with pytest.raises(PhasewiseError, match="unknown hardware 'b400_sxm'") as err:
        load_hardware("b400_sxm")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key", NEW_BLACKWELL)
def test_blackwell_entries_load_with_a_source_for_every_figure_group(key):
    entry = packaged("hardware_specs.yaml")["hardware"][key]
    for group in ("peak_flops", "vector_flops", "memory", "interconnect", "tdp_w", "idle_w", "price_per_hour_usd"):
        assert entry["sources"].get(group, "").strip(), f"{key}: no source for {group}"
    hw = load_hardware(key)
    assert set(hw.peak_flops) == {"tf32", "bf16", "fp16", "fp8", "int8", "fp4"}
    assert all(isinstance(v, float) for v in hw.peak_flops.values())  # '1e15' would be a YAML string
    assert hw.idle_w is not None and 0 < hw.idle_w < hw.tdp_w


def test_blackwell_figures_follow_the_datasheets():
    b200, b300, gb200, gb300 = (load_hardware(k) for k in ("b200", "b300", "gb200", "gb300"))
    # Blackwell Ultra: more dense FP4 and memory, INT8 cut to ~1/30 (Technical Brief v2.1 Table 3).
    assert b300.peak("fp4") == pytest.approx(14e15) and b300.peak("fp4") > b200.peak("fp4")
    assert b300.peak("int8") < b200.peak("int8") / 25
    assert gb300.peak("int8") < gb200.peak("int8") / 25
    assert b300.memory_capacity_bytes > 1.4 * b200.memory_capacity_bytes
    # GB200/GB300 run at 1,200/1,400 W with 8 TB/s; one NVLink domain spans the 72-GPU rack.
    assert (gb200.tdp_w, gb300.tdp_w, b300.tdp_w) == (1200, 1400, 1100)
    assert gb200.peak("fp4") == pytest.approx(10e15) and gb300.peak("fp4") == pytest.approx(15e15)
    for hw in (gb200, gb300):
        assert hw.memory_bandwidth_bytes_per_s == pytest.approx(8e12)
        assert hw.interconnect.gpus_per_node == 72
    assert b300.interconnect.gpus_per_node == 8


def test_tp16_stays_on_nvlink_on_an_nvl72_rack_but_not_on_hgx():
    from phasewise.perf.collectives import link

    assert link(load_hardware("gb200").interconnect, 16)[0] == pytest.approx(900e9)
    assert link(load_hardware("b300").interconnect, 16)[0] == pytest.approx(100e9)


def test_measured_model_paths_resolve():
    assert load_model("nvidia/Qwen3-32B-NVFP4").model_dump(exclude={"name", "native_precision"}) == \
        load_model("Qwen/Qwen3-32B").model_dump(exclude={"name", "native_precision"})
    assert load_model("nvidia/Qwen3-32B-NVFP4").default_precision == "nvfp4"
    assert load_model("meta-llama/Llama-3.1-70B").num_layers == 80


def test_estimate_llama70b_on_b300_tp2_nvfp4():
    from phasewise.perf import estimate

    est = estimate("meta-llama/Llama-3.1-70B", "b300", tp=2, precision="nvfp4", batch=8, prompt_len=1024)
    d = est.to_dict()
    assert d["hardware"] == "b300" and d["precision"] == "nvfp4" and d["fits"] is True
    assert d["prefill_ms"] > d["decode_step_ms"] > 0
    # NVFP4 weights are ~0.56 byte/param: 70.6e9 params over 2 GPUs is ~20 GB per GPU, far below 288 GB.
    assert 15e9 < d["memory"]["weight_bytes"] < 30e9
    # Decode streams those weights: the step cannot beat weight bytes / HBM bandwidth.
    assert d["decode_step_ms"] / 1e3 > d["memory"]["weight_bytes"] / 7.7e12
