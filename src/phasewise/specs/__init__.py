"""Specifications: models (HF config.json fields), hardware (spec sheets + efficiencies), quantization."""

from phasewise.specs.hardware import EngineProfile, HardwareSpec, load_engine, load_hardware
from phasewise.specs.model import ModelSpec
from phasewise.specs.model_catalog import load_model
from phasewise.specs.quant import QuantScheme, load_quant

__all__ = [
    "EngineProfile",
    "HardwareSpec",
    "ModelSpec",
    "QuantScheme",
    "load_engine",
    "load_hardware",
    "load_model",
    "load_quant",
]
