"""What an engine cannot run, each a one-line reason naming the flag that asked and the presets that can (None where
it runs): a chip of another vendor, expert or attention-data parallelism it lacks (or a partial EP where its EP
spans the instance), a quantized KV cache it cannot keep, a P/D pair its connector refuses, pipeline stages beside
what the version refuses with them, a block-scaled checkpoint split into partial blocks."""

from __future__ import annotations

from typing import Any

from phasewise.specs.catalog import packaged
from phasewise.specs.engine_presets import preset_entry, preset_key, version_table
from phasewise.specs.hardware import HardwareSpec

VENDOR_NAMES = {"nvidia": "NVIDIA", "amd": "AMD"}  # hardware_specs.yaml `vendor` as the error messages spell it


def vendor_refusal(engine: str, hw: HardwareSpec) -> str | None:
    """Why `engine` (a preset[@version]) does not run on `hw`: a preset whose `vendors` leave out the chip's vendor
    (TensorRT-LLM on an AMD GPU); None where it runs (a chip with no vendor, a profile name or file: any engine)."""
    presets = packaged("engine_presets.yaml")["presets"]
    name = engine.split("@", 1)[0]
    vendors = (presets.get(preset_key(engine)) or {}).get("vendors")
    if not vendors or hw.vendor is None or hw.vendor in vendors:
        return None
    runs_on = [key for key, entry in presets.items() if hw.vendor in (entry.get("vendors") or (hw.vendor,))]
    return (f"engine '{name}' runs on {' and '.join(VENDOR_NAMES[v] for v in vendors)} GPUs only; hardware "
            f"'{hw.key}' is an {VENDOR_NAMES[hw.vendor]} chip (engines for it: {', '.join(runs_on)})")


# The layouts of a MoE instance beyond tensor parallelism (perf/parallel.py) a preset may run (its `moe_parallelism`
# in engine_presets.yaml, with the sources), as the flags that ask for them name them
MOE_PARALLELISM = {"ep": "expert parallelism", "attention_dp": "attention data parallelism"}


def moe_parallelism_refusal(engine: str, kind: str, asked: str) -> str | None:
    """Why `engine` (preset[@version]; a host profile behaves as vLLM V1) cannot run `kind` (ep | attention_dp,
    MOE_PARALLELISM) as `asked` (the flag and value that asked for it, e.g. '--ep 8'), one line naming the presets
    that run it; None where it does."""
    if kind in (preset_entry(engine).get("moe_parallelism") or ()):
        return None
    takers = [name for name, entry in packaged("engine_presets.yaml")["presets"].items()
              if kind in (entry.get("moe_parallelism") or ())]
    return (f"{asked} is not possible on engine '{engine}': it has no {MOE_PARALLELISM[kind]} (engines that run "
            f"it: {', '.join(takers)})")


# Presets whose expert parallelism has no size of its own: vLLM's --enable-expert-parallel shards the experts over
# every GPU of the instance, tp x dp (vllm/model_executor/layers/fused_moe/config.py FusedMoEParallelConfig.make:
# use_ep makes ep_size = dp_size x tp_size and the MoE's own TP 1), so a partial EP (--ep below --tp, beside MoE
# tensor parallelism) has no vLLM argument. SGLang (--ep-size beside --tp-size, its --moe-dense-tp-size) and
# TensorRT-LLM (moe_expert_parallel_size x moe_tensor_parallel_size) size it on their own.
WHOLE_INSTANCE_EP = ("vllm",)


def layout_refusal(engine: str, tp: int, ep: int | None, moe_tp: int | None, attention_dp: int | None,
                   flags: dict[str, str], knobs: dict[str, Any] | None = None) -> str | None:
    """Why `engine` cannot run an instance of `tp` GPUs split as asked (ep, moe_tp, attention_dp as given, None
    where not), one line naming the flag that asked (`flags`: perf/parallel.py role_flags) and the presets that
    run it (moe_parallelism_refusal): expert parallelism (ep > 1, or moe_tp below tp) or attention DP (> 1) on an
    engine without it, or a partial EP (1 < ep < tp) on one whose EP spans the instance (WHOLE_INSTANCE_EP). None
    where it runs (sizes below 1, or that do not divide, are perf/parallel.py parallel_layout's to refuse). `knobs`:
    the engine knobs given; SGLang's --moe-a2a-backend deepep sets its EP size to the TP size itself
    (srt/server_args.py _handle_a2a_moe: "DeepEP MoE is enabled. The expert parallel size is adjusted to be the
    same as the tensor parallel size"), so a partial EP asked beside it would not run as asked."""
    asked = {"ep": (f"{flags['ep']} {ep}" if ep is not None and ep > 1 else
                    f"{flags['moe_tp']} {moe_tp}" if moe_tp is not None and 1 <= moe_tp < tp else None),
             "attention_dp": f"{flags['attention_dp']} {attention_dp}" if (attention_dp or 1) > 1 else None}
    refusal = next((r for kind, flag in asked.items()
                    if flag and (r := moe_parallelism_refusal(engine, kind, flag))), None)
    ep_size = ep if ep is not None else tp // moe_tp if moe_tp and tp % moe_tp == 0 else None
    if (refusal is None and preset_key(engine) == "sglang" and (knobs or {}).get("moe_a2a_backend") == "deepep"
            and (ep_size or 1) != tp):
        return (f"--moe-a2a-backend deepep sets SGLang's expert-parallel size to its TP size (srt/server_args.py "
                f"_handle_a2a_moe), so {asked['ep'] or flags['ep'] + ' 1'} would run as {flags['ep']} {tp}: give "
                f"{flags['ep']} {tp} ({flags['moe_tp']} 1), or drop --moe-a2a-backend")
    if (refusal is None and preset_key(engine) in WHOLE_INSTANCE_EP and ep_size is not None and 1 < ep_size < tp
            and tp % ep_size == 0):  # a size that does not divide: parallel_layout's error names the allowed ones
        takers = [name for name, entry in packaged("engine_presets.yaml")["presets"].items()
                  if "ep" in (entry.get("moe_parallelism") or ()) and name not in WHOLE_INSTANCE_EP]
        return (f"{asked['ep']} is not possible on engine '{engine.split('@', 1)[0]}': its expert parallelism "
                f"(--enable-expert-parallel) spans all {tp} GPUs of the instance, so {flags['ep']} must be {tp} "
                f"({flags['moe_tp']} 1) or expert parallelism off (a partial EP runs on: {', '.join(takers)})")
    return refusal


# Presets that refuse, at load, a tensor-parallel slice of a block-scaled (quant.yaml weight_blocks) linear that does
# not hold whole weight blocks, and the first version that accepts it instead (None: none modelled does):
#   vLLM   (V0 and V1 alike: one quantization layer) Fp8MoEMethod.create_weights: "The output_size of gate's and
#          up's weight = 192 is not divisible by weight quantization block_n = 128" (and the down projection's input
#          by block_k under TP); Fp8LinearMethod's
#          validate_fp8_block_shape for a dense linear's output (column-parallel) and input (row-parallel) slices.
#          Reported on 0.19 (MiniMax-M2.7 TP8) and 0.25 (MiniMax-M2.5 TP8, served with --enable-expert-parallel
#          instead), vLLM issue #17569 (Qwen3-235B-A22B-FP8 TP8); padding PRs #39046 and #48173 closed unmerged; #55867
#          (merged 2026-09) pads only on FlashInfer's TRT-LLM MoE backend, after every version modelled (0.14 newest)
#   SGLang the same check in its Fp8MoEMethod (QwenLM/Qwen3 issue #1485: Qwen3-235B-A22B-FP8 and Qwen3-30B-A3B-FP8
#          at TP 8 / 4; sgl-project/sglang issue #3345: DeepSeek-R1 at TP32, its dense MLP 18,432 / 32 = 576)
# Checked against the measured runs (/work/shared/measured/blackwell_serving.csv, tp = the instance's GPUs, moe_tp =
# G / ep): no fp8-block row splits a block (MiniMax-M2.5 on vLLM at moe_tp <= 4, 384-wide; Qwen3.5-397B-A17B on
# SGLang at moe_tp 8, 128-wide; DeepSeek-R1 / V3 at moe_tp <= 8, 256-wide) but five SGLang 0.5.5.post2 DeepSeek-V3
# decode rows read as 32 GPUs at attention DP 32 without EP (2,048 / 32 = 64): a reading of the columns the source
# does not confirm (its other 32-GPU rows are EP 32), not a layout SGLang accepts. TensorRT-LLM was not read: no rule.
BLOCK_SHAPE_PRESETS: dict[str, str | None] = {"vllm": None, "vllm-v0": None, "sglang": None}


def block_shape_refusal(engine: str, model: Any, precision: str, tp: int, moe_tp: int | None = None,
                        attention_dp: int = 1, flags: dict[str, str] | None = None) -> str | None:
    """Why `engine` (preset[@version]) cannot load `model` (a ModelSpec) in `precision` (a quant.yaml scheme name)
    split over `tp` GPUs, its experts over `moe_tp` of them (None: tp) and its attention, dense MLP and shared experts
    over tp / attention_dp: a slice of a block-scaled linear (quant.yaml weight_blocks) that is not a whole number of
    blocks (BLOCK_SHAPE_PRESETS, with the sources). One line naming the model's width, the split and the flags that
    run it; None where it loads (an engine without the rule, a scheme without blocks, whole blocks everywhere)."""
    flags = flags or {"tp": "--tp", "ep": "--ep", "attention_dp": "--attention-dp"}
    name, _, version = engine.partition("@")
    key = preset_key(engine)
    if key not in BLOCK_SHAPE_PRESETS:
        return None
    accepts_from = BLOCK_SHAPE_PRESETS[key]
    if accepts_from is not None and version:
        from phasewise.specs.engine_kv import version_key

        if version_key(version) >= version_key(accepts_from):
            return None
    data = packaged("quant.yaml")
    schemes = data["schemes"]
    if precision not in schemes:
        return None  # load_quant's error names the allowed ones
    blocks = data.get("weight_blocks", {})
    experts = schemes[precision].get("experts") or precision
    moe_tp = tp if moe_tp is None else moe_tp
    attention_tp = max(tp // max(attention_dp, 1), 1)
    # (what, width, GPUs it is split over, the block side it must be a multiple of)
    widths = []
    if model.num_experts and experts in blocks and moe_tp > 1:
        widths.append(("routed experts' intermediate size", model.expert_intermediate_size, moe_tp,
                       max(blocks[experts])))
    if precision in blocks and attention_tp > 1:
        side = max(blocks[precision])
        if model.intermediate_size and model.dense_layer_share:
            widths.append(("dense MLP's intermediate_size", model.intermediate_size, attention_tp, side))
        if model.shared_expert_intermediate_size:
            widths.append(("shared experts' intermediate size", model.shared_expert_intermediate_size, attention_tp,
                           side))
    for what, width, ranks, side in widths:
        if width % ranks == 0 and (width // ranks) % side == 0:
            continue
        label = f"{name}@{version or preset_entry(engine)['default_version']}"
        fits = [d for d in range(1, width // side + 1) if width % d == 0 and (width // d) % side == 0]
        if "expert" in what and "routed" in what:
            fix = (f"give {flags['ep']} {tp} (each GPU holds whole experts) or a {flags['tp']} whose experts' share "
                   f"divides it into whole blocks ({', '.join(map(str, fits))})")
        else:
            fix = (f"give a {flags['tp']} (per attention rank) that divides it into whole blocks "
                   f"({', '.join(map(str, fits))})")
        return (f"{precision} stores {model.name}'s weights in {side}-wide blocks, but its {what} {width} split over "
                f"{ranks} GPUs is {width / ranks:g} wide per GPU, not a multiple of {side}: {label} refuses it at load "
                f"(\"not divisible by weight quantization block_n = {side}\"); {fix}")
    return None


# The quantized KV-cache dtypes (--kv-dtype) each preset can keep, as its own KV-cache flag spells them. Checked by
# kv_dtype_refusal, beside the unquantized ones (UNQUANTIZED_KV_DTYPES). A bare host profile (engines.yaml, a calibrated
# file) keeps any.
QUANTIZED_KV_DTYPES = ("fp8", "int8", "int4")
# vLLM --kv-cache-dtype: auto, fp8, fp8_e4m3, fp8_e5m2 (docs features/quantization/quantized_kvcache: FP8 only)
VLLM_KV = ("fp8",)
PRESET_KV_DTYPES: dict[str, tuple[str, ...]] = {
    "vllm": VLLM_KV, "vllm-v0": VLLM_KV,
    # vLLM 0.2 had no quantized KV cache: kv_cache_dtype came with FP8 E5M2 (vllm-project/vllm PR #2279, Jan 2024)
    "vllm-2023": (),
    # scheduling policies modelled on vLLM's engine (their profile is vLLM's): its KV cache
    "sarathi": VLLM_KV, "ascendra-lp": VLLM_KV, "ascendra-hp": VLLM_KV,
    # SGLang 0.5 srt/server_args.py --kv-cache-dtype choices: auto, fp8_e5m2, fp8_e4m3, bf16, bfloat16, fp4_e2m1
    "sglang": ("fp8",),
    # TensorRT-LLM 1.x PyTorch backend (_torch/pyexecutor model_loader: _VALID_KV_CACHE_DTYPES = ("fp8", "nvfp4",
    # "auto") for kv_cache_config.dtype; an INT8 KV cache reached that backend only in a 2026 change, after 1.1)
    "trtllm": ("fp8",), "trtllm-bench": ("fp8",),
    # TensorRT-LLM 0.5 C++ runtime: engines built with --int8_kv_cache or --fp8_kv_cache (examples/llama/build.py)
    "trtllm-0.5": ("fp8", "int8"),
}
# An unquantized KV cache (fp32, bf16, fp16) runs on every preset in the model's dtype, what each engine's "auto" keeps
# (vLLM CacheConfig.cache_dtype: 'If "auto", will use model data type'; SGLang's --kv-cache-dtype help: '"auto" will
# use model data type'; TensorRT-LLM's "auto": the checkpoint's dtype), and in another only where the engine has a
# value of its own for it (UNQUANTIZED_KV_VALUES); none has one for fp32.
UNQUANTIZED_KV_DTYPES = ("fp32", "bf16", "fp16")
# The unquantized dtypes a preset keeps whatever the model's: SGLang's "bf16" / "bfloat16" (its choices above: no
# fp16, no fp32). vLLM's CacheDType (vllm/config/cache.py) has "bfloat16" from 0.11 only as the way out of a model
# that defaults to fp8 ("set to bfloat16 to use bfloat16 instead, this is an invalid option for models that do not
# default to fp8": there bf16 is the model's dtype, which runs anyway); no float32 in any version (its newest main
# lists "float16" too, not shown in the 0.8.5-0.14 the presets model). TensorRT-LLM: "auto" is its only unquantized
# value (the list above); its 0.5 C++ runtime kept the KV cache in the engine's --dtype.
UNQUANTIZED_KV_VALUES: dict[str, tuple[str, ...]] = {"sglang": ("bf16",)}


def kv_dtype_refusal(engine: str, kv_dtype: str, model_dtype: str | None = None) -> str | None:
    """Why `engine` (preset[@version] or an engine file refining one) cannot keep its KV cache in `kv_dtype` (a
    --kv-dtype), one line naming what it can; None where it can: a quantized dtype its flag has (PRESET_KV_DTYPES),
    `model_dtype` (the model's dtype as served: the precision's activation dtype, quant.yaml, which the engine's
    "auto" keeps) or another unquantized one it has a value for (UNQUANTIZED_KV_VALUES), or any on a bare host
    profile. `model_dtype` None (not known to the caller): an unquantized dtype is not checked."""
    key = preset_key(engine)
    if key not in packaged("engine_presets.yaml")["presets"]:
        return None
    quantized, explicit = PRESET_KV_DTYPES[key], UNQUANTIZED_KV_VALUES.get(key, ())
    if kv_dtype in quantized or kv_dtype in explicit or kv_dtype == model_dtype:
        return None
    if kv_dtype not in QUANTIZED_KV_DTYPES and model_dtype is None:
        return None
    own = model_dtype or "the model's dtype"
    allowed = ", ".join(dict.fromkeys((own, *explicit, *quantized)))
    if kv_dtype in QUANTIZED_KV_DTYPES:
        keeps = f"quantizes its KV cache to {' or '.join(quantized)} only" if quantized else \
            "keeps its KV cache in the model's dtype only"
    else:
        others = f" or {' or '.join(d for d in explicit if d != model_dtype)}" if set(explicit) - {model_dtype} else ""
        keeps = f"keeps an unquantized KV cache only in the model's dtype ({own}, what its auto keeps){others}"
    name = engine.split("@", 1)[0]
    return (f"--kv-dtype {kv_dtype} is not possible on engine '{name}': it {keeps} (allowed: {allowed}; a host "
            "profile such as --engine ideal keeps any)")


def disagg_kv_dtype_refusal(engine: str, prefill_kv_dtype: str, decode_kv_dtype: str) -> str | None:
    """Why `engine`'s (the decode side's preset) P/D connector refuses a prefill instance keeping its KV cache in
    `prefill_kv_dtype` beside a decode one keeping it in `decode_kv_dtype`, or None: vLLM's NixlConnector (the
    preset's kv_connector_tp) hashes cache_dtype into the compatibility hash both sides compare at their handshake
    (nixl_connector.py compute_nixl_compatibility_hash: "KV cache format (dtype, sliding window)"), so the pair
    never connects. A preset without that connector has none."""
    entry = packaged("engine_presets.yaml")["presets"].get(preset_key(engine)) or {}
    rule = entry.get("kv_connector_tp")
    if not rule or prefill_kv_dtype == decode_kv_dtype:
        return None
    return (f"a prefill KV cache in {prefill_kv_dtype} beside a decode one in {decode_kv_dtype}: {engine}'s "
            f"{rule['connector']} refuses the pair at its handshake (its compatibility hash holds the KV cache dtype); "
            "give both roles the same --kv-dtype (kv_dtype)")


def disagg_tp_refusal(engine: str, prefill_tp: int, decode_tp: int, kv_heads: int | None) -> str | None:
    """Why `engine`'s (preset[@version]) P/D connector refuses a prefill instance whose attention runs over
    `prefill_tp` GPUs beside a decode one over `decode_tp` (vLLM's --tensor-parallel-size: with attention data
    parallelism each rank's, tp / attention_dp; the preset's `kv_connector_tp` in engine_presets.yaml: vLLM's
    NixlConnector; the decode side's engine, whose worker reads the prefill's KV and checks the pair at its
    handshake), or None where it runs. `kv_heads`: the model's KV heads (config.json num_key_value_heads), for the
    replicated-KV rule; None skips it. A preset without the rule (or a host profile) has none."""
    from phasewise.specs.engine_kv import version_key

    name, _, version = engine.partition("@")
    entry = packaged("engine_presets.yaml")["presets"].get(preset_key(engine)) or {}
    rule = entry.get("kv_connector_tp")
    if not rule:
        return None
    label, connector = f"{name}@{version or entry['default_version']}", rule["connector"]
    if max(prefill_tp, decode_tp) % min(prefill_tp, decode_tp):
        return (f"{label}'s {connector} splits the KV between a prefill TP{prefill_tp} and a decode TP{decode_tp} "
                "instance only when one TP is a multiple of the other")
    if prefill_tp <= decode_tp:
        return None
    first = str(rule["prefill_above_decode_from"])
    if version_key(version or entry["default_version"]) < version_key(first):
        return (f"prefill TP{prefill_tp} above decode TP{decode_tp}: {label}'s {connector} refuses it (\"Decode TP "
                f"cannot be smaller than prefill TP\"; supported from {name}@{first}); give the decode instances at "
                "least the prefill's TP")
    if kv_heads is not None and prefill_tp >= kv_heads:
        return (f"prefill TP{prefill_tp} above decode TP{decode_tp} with the prefill's KV replicated (TP{prefill_tp} "
                f">= the model's {kv_heads} KV heads): {label}'s {connector} refuses it (\"Num kv_heads > tp_size and "
                "P TP > D TP case, not supported\"); give the decode instances at least the prefill's TP")
    return None


def pipeline_refusal(engine: str, pp: int, speculative: bool, mixed_chunk: bool = False) -> str | None:
    """Why `engine` (preset[@version], or a file refining one) cannot run `pp` pipeline stages beside speculative
    decoding (`speculative`) or --enable-mixed-chunk (`mixed_chunk`), one line naming the flag; None where it runs
    (an unknown version: resolve_engine's error). For a planner to prune such layouts."""
    name, _, version = engine.partition("@")
    entry = preset_entry(engine)
    version = version or entry["default_version"]
    if version not in entry["versions"]:
        return None
    return pipeline_rule_refusal(f"{name}@{version}", version_table(name, entry, version).get("pipeline_parallel") or {},
                             pp, speculative, mixed_chunk)


def pipeline_rule_refusal(label: str, rule: dict[str, Any], pp: int, speculative: bool, mixed_chunk: bool) -> str | None:
    """What the version refuses beside PP > 1 (its `pipeline_parallel` `refuses` in engine_presets.yaml): SGLang's
    check_server_args stops at start-up when pp_size > 1 comes with speculative decoding or --enable-mixed-chunk."""
    asked = {"enable_mixed_chunk": "--enable-mixed-chunk" if mixed_chunk else None,
             "speculative": "speculative decoding (--spec-tokens)" if speculative else None}
    refused = [asked[what] for what in rule.get("refuses") or () if asked.get(what)]
    if pp < 2 or not refused:
        return None
    return (f"{refused[0]} with --pp {pp} is not possible on {label}: it refuses pipeline parallelism beside "
            "speculative decoding or mixed chunked prefill at start-up; use --pp 1 or drop it")
