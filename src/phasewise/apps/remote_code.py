"""Whether a launch script must let the engine run the checkpoint's own code to read its config.json
(apps/data/remote_code.yaml: the model_types transformers does not register, with the source of each list)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from phasewise.specs.model_catalog import checkpoint_model_type

# each engine's switch (apps/data/engine_flags.yaml lists it with the engine's other arguments)
TRUST_FLAG = {"vllm": "--trust-remote-code", "sglang": "--trust-remote-code", "trtllm": "--trust_remote_code"}


@cache
def remote_code_types() -> dict[str, Any]:
    return yaml.safe_load(resources.files("phasewise.apps").joinpath("data", "remote_code.yaml").read_text())


def remote_code_args(model: str, family: str) -> tuple[list[str], list[str]]:
    """The engine arguments and comment lines reading `model`'s config.json takes on engine `family` (vllm | sglang
    | trtllm): the trust flag where no transformers release reads its model_type; a comment where only transformers
    5 does; nothing else."""
    model_type = checkpoint_model_type(model)
    types = remote_code_types()
    flag = TRUST_FLAG[family]
    if model_type in types["remote_code"]:
        return [flag], [f"{flag}: model_type '{model_type}' is read only by the checkpoint's own configuration code "
                        "(config.json auto_map; no transformers release registers it), which the engine then runs"]
    if model_type in types["transformers_5"]:
        return [], [f"model_type '{model_type}': registered by transformers 5 (5.25.0), not 4.57.6; an engine image on "
                    "transformers 4.x reads it only through a config class of the engine's own"]
    return [], []
