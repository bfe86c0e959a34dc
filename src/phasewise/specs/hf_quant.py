"""A checkpoint's own weight format, read from its config.json's quantization_config as a --precision name (the
format a model is costed in unless the user gives another: ModelSpec.native_precision). A format or parameter not
modelled here is no error while the user gives --precision (ModelSpec.unmodelled_quantization: default_precision
raises it); a quantization_config that is not well-formed is an error at once."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.model import ModelSpec

# the quant_method values read here (fbgemm_fp8: Meta's FP8 checkpoints, e.g. Llama-3.1-405B-Instruct-FP8)
KNOWN_METHODS = ("fp8", "fbgemm_fp8", "mxfp4", "modelopt", "awq", "gptq", "compressed-tensors")
# the weight bits AWQ and GPTQ checkpoints are read at: 4 (w4a16, Marlin-style kernels). vLLM runs GPTQ's 8-bit
# weights too (gptq_marlin.py TYPE_MAP: uint4b8, uint8b128), in groups whose scales w8a16 does not count: give
# --precision for them
WEIGHT_ONLY_BITS = {4: "w4a16"}


class UnmodelledFormat(PhasewiseError):
    """A well-formed quantization_config whose format or parameter has no --precision here: the checkpoint runs
    only where the user names what to cost its weights as (--precision)."""


def checkpoint_precision(cfg: dict[str, Any], where: str) -> tuple[str | None, str | None]:
    """(native_precision, unmodelled_quantization) of a checkpoint's config.json: its --precision name (None when it
    has no quantization_config), or, where its format is not modelled, None and the one-line reason, which a run
    without --precision raises (ModelSpec.default_precision). A malformed quantization_config is an error here."""
    try:
        return native_precision(cfg, where), None
    except UnmodelledFormat as exc:
        return None, str(exc)


def with_checkpoint_precision(spec: ModelSpec, cfg: dict[str, Any], where: str) -> ModelSpec:
    """`spec` with its checkpoint's format (checkpoint_precision): the --precision it runs in by default, or why
    none is modelled (a run then needs --precision)."""
    native, unmodelled = checkpoint_precision(cfg, where)
    if not (native or unmodelled):
        return spec
    return spec.model_copy(update={"native_precision": native, "unmodelled_quantization": unmodelled})


def native_precision(cfg: dict[str, Any], where: str) -> str | None:
    """The --precision name of a checkpoint's quantization_config (None when it has none): FP8 with 128x128
    block scales (DeepSeek, Qwen3 -FP8) is fp8-block, per-tensor FP8 (ModelOpt, compressed-tensors) fp8, FBGEMM's
    per-channel FP8 (Meta's -FP8 checkpoints) fp8, MXFP4 (gpt-oss: the experts only) bf16-mxfp4, ModelOpt NVFP4
    nvfp4, 4-bit AWQ/GPTQ weights w4a16; compressed-tensors (llm-compressor) checkpoints by their weights' and
    activations' types (_group_scheme). A format not modelled raises UnmodelledFormat."""
    qc = cfg.get("quantization_config")
    if not qc:
        return None
    if not isinstance(qc, dict):
        raise PhasewiseError(f"{where}: quantization_config must be a mapping")
    method = str(qc.get("quant_method", "")).lower()
    experts = str(qc.get("expert_dtype") or cfg.get("expert_dtype") or "").lower()
    if method == "fp8" and experts in ("fp4", "mxfp4"):
        # DeepSeek-V4: FP4 experts (E2M1 with a UE8M0 scale per 32: MXFP4) beside FP8 blocks elsewhere
        return "fp8-block-mxfp4"
    if method == "fp8" and str(qc.get("store_dtype", "fp8")).lower() not in ("fp8", "e4m3"):
        raise UnmodelledFormat(f"{where}: quantization_config store_dtype '{qc['store_dtype']}' is not modelled (an "
                               "FP8 checkpoint stored in another format); give --precision")
    if method == "fp8":
        return "fp8-block" if qc.get("weight_block_size") else "fp8"
    if method == "fbgemm_fp8":
        # vLLM quantization/fbgemm_fp8.py FBGEMMFp8LinearMethod: FP8 E4M3 weights with a scale per output channel
        # (ChannelQuantScaleParameter), activations quantized per token at run time (Fp8LinearOp with
        # use_per_token_if_dynamic; Marlin weight-only below compute capability 8.9, as for every fp8 checkpoint),
        # modules_to_not_convert left unquantized: W8A8 FP8 with per-channel scales, the fp8 scheme
        # (specs/data/quant.yaml), as the catalog runs meta-llama/Llama-3.1-405B-Instruct-FP8 (alias_precisions)
        return "fp8"
    if method == "mxfp4":  # Hugging Face's Mxfp4Config quantizes the MoE experts only (modules_to_not_convert)
        return "bf16-mxfp4"
    if method == "modelopt":
        algo = str(qc.get("quant_algo", "")).upper()
        if algo in ("FP8", "NVFP4"):
            return algo.lower()
        raise UnmodelledFormat(f"{where}: quantization_config quant_algo '{algo}' is not modelled (known: FP8, "
                               "NVFP4); give --precision")
    if method in ("awq", "gptq"):
        field = "bits" if qc.get("bits") is not None or qc.get("w_bit") is None else "w_bit"
        bits = qc.get(field, 4)
        if not isinstance(bits, int) or isinstance(bits, bool):
            raise PhasewiseError(f"{where}: quantization_config {field} must be an integer (got {bits!r})")
        if bits not in WEIGHT_ONLY_BITS:
            modelled = ", ".join(f"{b} ({name})" for b, name in WEIGHT_ONLY_BITS.items())
            raise UnmodelledFormat(f"{where}: quantization_config {field} {bits} is not modelled for quant_method "
                                   f"'{method}' (modelled: {modelled}); give --precision")
        return WEIGHT_ONLY_BITS[bits]
    if method == "compressed-tensors":
        return _compressed_tensors(qc, where)
    raise UnmodelledFormat(f"{where}: quantization_config quant_method '{method}' is not modelled "
                           f"(known: {', '.join(KNOWN_METHODS)}); give --precision")


# compressed-tensors formats that store sparse weights (2:4 or bitmask: vllm-project/compressed-tensors
# CompressionFormat): their kernels (vLLM's CompressedTensors24, marlin-24) are not modelled
SPARSE_FORMATS = ("sparse-bitmask", "sparse-24-bitmask", "marlin-24")


def _compressed_tensors(qc: dict[str, Any], where: str) -> str:
    """The scheme of a compressed-tensors checkpoint (llm-compressor's): every config group must give the same one
    (mixed precision across layers is not modelled), its format and sparsity_config dense."""
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups or not all(isinstance(g, dict) for g in groups.values()):
        raise PhasewiseError(f"{where}: quantization_config config_groups must map each group's name to its weights "
                             "and input_activations")
    _refuse_sparsity(qc, groups, where)
    schemes = {_group_scheme(name, group, qc, where) for name, group in groups.items()}
    if len(schemes) > 1:
        raise UnmodelledFormat(f"{where}: quantization_config config_groups give different schemes "
                               f"({', '.join(sorted(schemes))}): mixed precision is not modelled; give --precision")
    return schemes.pop()


def _refuse_sparsity(qc: dict[str, Any], groups: dict[str, Any], where: str) -> None:
    """Sparse weights (a sparse format, or sparsity_config's 2:4 structure, which vLLM runs on CUTLASS 2:4 kernels
    even stored dense: CompressedTensorsConfig.supports_cutlass_24) are refused; an unstructured sparsity_config
    over dense weights runs dense."""
    sparsity = qc.get("sparsity_config") or {}
    if not isinstance(sparsity, dict):
        raise PhasewiseError(f"{where}: quantization_config sparsity_config must be a mapping or null")
    named = [("format", qc.get("format")), ("sparsity_config.format", sparsity.get("format"))] + [
        (f"config_groups.{name}.format", group.get("format")) for name, group in groups.items()]
    sparse = [(field, value) for field, value in named if str(value or "").lower() in SPARSE_FORMATS]
    if sparsity.get("sparsity_structure") == "2:4":
        sparse.append(("sparsity_config.sparsity_structure", "2:4"))
    if sparse:
        field, value = sparse[0]
        raise UnmodelledFormat(f"{where}: quantization_config {field} '{value}' is not modelled (sparse weights; "
                               "known: dense weights, formats pack-quantized, int-quantized, float-quantized, "
                               "naive-quantized, nvfp4-pack-quantized, mxfp4-pack-quantized); give --precision")


def _args(group: dict[str, Any], key: str, name: str, where: str) -> tuple[str, int, int | None] | None:
    """(type, num_bits, group_size) of a config group's weights or input_activations (None: not quantized)."""
    args = group.get(key)
    if args is None:
        return None
    if not isinstance(args, dict):
        raise PhasewiseError(f"{where}: quantization_config config_groups.{name}.{key} must be a mapping or null")
    kind = str(args.get("type", "")).lower()
    bits = args.get("num_bits")
    if kind not in ("int", "float") or not isinstance(bits, int) or isinstance(bits, bool):
        raise PhasewiseError(f"{where}: quantization_config config_groups.{name}.{key} needs type (int or float) and "
                             f"num_bits (got type {args.get('type')!r}, num_bits {bits!r})")
    return kind, bits, args.get("group_size")


def _group_scheme(name: str, group: dict[str, Any], qc: dict[str, Any], where: str) -> str:
    """One config group's scheme, as vLLM's CompressedTensorsConfig._get_scheme_from_parts picks its kernels from
    the weights' and input activations' type, bits and group size (input_activations null: weight-only):
    - 4-bit float weights in groups of 16 with 4-bit float activations: NVFP4 (llm-compressor's NVFP4 preset,
      vLLM's CompressedTensorsW4A4Fp4); without activations (NVFP4A16) vLLM runs FP4 weights on BF16 compute,
      which no scheme here models
    - 4-bit float weights in groups of 32: MXFP4 (the MXFP4 / MXFP4A16 presets; vLLM picks its MXFP4 scheme from the
      weights alone, _is_mxfp4(weight_quant))
    - INT8 weights: W8A16 without activations (vLLM's CompressedTensorsWNA16), W8A8-INT8 with INT8 activations
      (CompressedTensorsW8A8Int8)
    - FP8 weights with FP8 activations: W8A8-FP8 (FP8_DYNAMIC; CompressedTensorsW8A8Fp8), in 128 x 128 blocks
      (FP8_BLOCK: weights strategy block) fp8-block; FP8 weight-only (vLLM's CompressedTensorsW8A16Fp8, FP8 weights
      expanded to BF16) has no scheme here
    - INT4 weights without activations: W4A16 (AWQ / GPTQ-style; the Kimi-K2 Thinking / K2.5 case below)."""
    weights = _args(group, "weights", name, where)
    acts = _args(group, "input_activations", name, where)
    if weights is None:
        raise PhasewiseError(f"{where}: quantization_config config_groups.{name}.weights is missing")
    w_kind, w_bits, w_group = weights
    a_kind, a_bits, a_group = acts or (None, None, None)
    if (w_kind, w_bits) == ("float", 4) and w_group == 32 and (a_kind, a_bits) in ((None, None), ("float", 4)):
        return "mxfp4"
    if (w_kind, w_bits, w_group) == ("float", 4, 16) and (a_kind, a_bits, a_group) == ("float", 4, 16):
        return "nvfp4"
    if (w_kind, w_bits) == ("int", 8) and acts is None:
        return "w8a16"
    if (w_kind, w_bits) == ("int", 8) and (a_kind, a_bits) == ("int", 8):
        return "int8"
    if (w_kind, w_bits) == ("float", 8) and (a_kind, a_bits) == ("float", 8):
        return _fp8(group["weights"], name, where)
    if (w_kind, w_bits) == ("int", 4) and acts is None:
        return _int4_weight_only(group["weights"], qc)
    activations = f"{a_kind} {a_bits}-bit" if acts else "null (weight-only)"
    raise UnmodelledFormat(
        f"{where}: quantization_config config_groups.{name}: weights {w_kind} {w_bits}-bit (group_size {w_group}) "
        f"with input_activations {activations} is not modelled (known: float 4-bit group 16 with float 4-bit "
        "activations = nvfp4, float 4-bit group 32 = mxfp4, int 8-bit weight-only = w8a16, int 8-bit with int 8-bit "
        "activations = int8, float 8-bit with float 8-bit activations = fp8 / fp8-block, int 4-bit weight-only = "
        "w4a16); give --precision")


def _fp8(weights: dict[str, Any], name: str, where: str) -> str:
    """W8A8-FP8 by its weights' scales: per tensor or channel (FP8 / FP8_DYNAMIC) fp8, 128 x 128 blocks (FP8_BLOCK's
    block_structure) fp8-block; other groupings (MXFP8's groups of 32) have no scheme here."""
    strategy = str(weights.get("strategy") or "tensor").lower()
    if strategy in ("tensor", "channel"):
        return "fp8"
    if strategy == "block" and weights.get("block_structure") == [128, 128]:
        return "fp8-block"
    raise UnmodelledFormat(f"{where}: quantization_config config_groups.{name}.weights: FP8 with strategy "
                           f"'{strategy}' (block_structure {weights.get('block_structure')!r}) is not modelled (known: "
                           "tensor, channel = fp8; block with block_structure [128, 128] = fp8-block); give "
                           "--precision")


def _int4_weight_only(weights: dict[str, Any], qc: dict[str, Any]) -> str:
    """INT4 weight-only: symmetric groups of 32 (Kimi-K2 Thinking / K2.5) are w4a16-g32, bf16-w4a16-g32 where the
    ignore list keeps the attention BF16 (their INT4 routed experts; the attention and shared experts left BF16);
    other INT4 weights w4a16."""
    if weights.get("group_size") == 32 and weights.get("symmetric"):
        ignore = [str(rule) for rule in qc.get("ignore") or []]
        return "bf16-w4a16-g32" if any("self_attn" in rule for rule in ignore) else "w4a16-g32"
    return "w4a16"
