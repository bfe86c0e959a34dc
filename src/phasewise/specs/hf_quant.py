"""A checkpoint's own weight format, read from its config.json's quantization_config as a --precision name (the
format a model is costed in unless the user gives another: ModelSpec.native_precision)."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError


def native_precision(cfg: dict[str, Any], where: str) -> str | None:
    """The --precision name of a checkpoint's quantization_config (None when it has none): FP8 with 128x128
    block scales (DeepSeek, Qwen3 -FP8) is fp8-block, per-tensor FP8 (ModelOpt, compressed-tensors) fp8, MXFP4
    (gpt-oss: the experts only) bf16-mxfp4, ModelOpt NVFP4 nvfp4, 4-bit AWQ/GPTQ/compressed-tensors weights w4a16
    (compressed-tensors' symmetric group-32 INT4 w4a16-g32, bf16-w4a16-g32 where its ignore list keeps the attention
    BF16: Kimi-K2 Thinking, K2.5)."""
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
        raise PhasewiseError(f"{where}: quantization_config store_dtype '{qc['store_dtype']}' is not modelled (an FP8 "
                             "checkpoint stored in another format); give --precision")
    if method == "fp8":
        return "fp8-block" if qc.get("weight_block_size") else "fp8"
    if method == "mxfp4":  # Hugging Face's Mxfp4Config quantizes the MoE experts only (modules_to_not_convert)
        return "bf16-mxfp4"
    if method == "modelopt":
        algo = str(qc.get("quant_algo", "")).upper()
        if algo in ("FP8", "NVFP4"):
            return algo.lower()
        raise PhasewiseError(f"{where}: quantization_config quant_algo '{algo}' is not modelled (known: FP8, NVFP4)")
    if method in ("awq", "gptq") and int(qc.get("bits", qc.get("w_bit", 4))) == 4:
        return "w4a16"
    if method == "compressed-tensors":
        groups = (qc.get("config_groups") or {}).values()
        weights = [(g or {}).get("weights") or {} for g in groups]
        bits = {int(w.get("num_bits", 0)) for w in weights}
        if bits == {4} and {w.get("group_size") for w in weights} == {32} and all(w.get("symmetric") for w in weights):
            # Kimi-K2 Thinking / K2.5: INT4 routed experts, the attention (and shared experts) left BF16 by the ignore
            # list; every linear layer INT4 otherwise
            ignore = [str(rule) for rule in qc.get("ignore") or []]
            return "bf16-w4a16-g32" if any("self_attn" in rule for rule in ignore) else "w4a16-g32"
        if bits == {4}:
            return "w4a16"
        if bits == {8}:
            return "fp8"
    raise PhasewiseError(f"{where}: quantization_config quant_method '{method}' is not modelled "
                         f"(known: fp8, mxfp4, modelopt, awq, gptq, compressed-tensors 4/8-bit); give --precision")
