"""A device-cloud U-shaped (hat-shaped) split: every device holds the model's first `input_layers` (with the
embedding) and last `output_layers` (with the final norm + LM head) plus a small `adapter_layers` adapter, so
input + adapter + output is an on-device draft model; one cloud server holds the middle layers on
`cloud_gpus` GPUs, each a full copy of the middle model (data parallel, tp = 1) that batches what is queued.
Each device has its own uplink and downlink to the cloud.

YAML (or the same dict built from flags):
  devices: 30                 # how many devices (all of one kind); default 30
  device_hardware: jetson-agx-orin   # default jetson-agx-orin
  cloud_hardware: a6000       # default a6000
  cloud_gpus: 8               # default 8
  uplink_mbps: 100            # finite, > 0; default 100 (downlink_mbps too)
  downlink_mbps: 200
  latency_s: 0.01             # one way, each direction; default 0.01
  input_layers: 1             # default 1 (output_layers, adapter_layers too)
  output_layers: 1
  adapter_layers: 1
Every field has a default, the `device-cloud` flag's of the same name (latency_s: --latency-ms / 1000), so a file
that leaves a field out runs as the flags would; YAML's true / false is refused where a number goes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from phasewise.errors import PhasewiseError, pydantic_message
from phasewise.specs.numbers_not_booleans import NumbersNotBooleans
from phasewise.specs.topology import Topology, parse_topology


class DeviceCloud(NumbersNotBooleans):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # every default is `phasewise device-cloud`'s flag's (HAT's testbed; tests/test_readmeC_review_fixes.py holds
    # each field's equal): a setup file that leaves a field out runs as the flags would
    devices: int = Field(default=30, ge=1)
    device_hardware: str = Field(default="jetson-agx-orin", min_length=1)
    cloud_hardware: str = Field(default="a6000", min_length=1)
    cloud_gpus: int = Field(default=8, ge=1, le=10_000)  # each simulated as its own worker: a typo of 10^11 hung
    uplink_mbps: float = Field(default=100.0, gt=0, allow_inf_nan=False)
    downlink_mbps: float = Field(default=100.0, gt=0, allow_inf_nan=False)
    latency_s: float = Field(default=0.01, ge=0, allow_inf_nan=False)
    input_layers: int = Field(default=1, ge=1)
    output_layers: int = Field(default=1, ge=1)
    adapter_layers: int = Field(default=1, ge=0)

    def middle_layers(self, num_layers: int) -> int:
        return num_layers - self.input_layers - self.output_layers

    def check(self, num_layers: int) -> None:
        """A one-line error when the device's layers leave the cloud nothing."""
        if self.middle_layers(num_layers) < 1:
            raise PhasewiseError(f"device-cloud split: input {self.input_layers} + output {self.output_layers} "
                                 f"layers leave none of the model's {num_layers} for the cloud")

    def split(self, num_layers: int) -> list[int]:
        """Layers per stage of the U: device input, cloud middle, device output."""
        self.check(num_layers)
        return [self.input_layers, self.middle_layers(num_layers), self.output_layers]

    def u_topology(self) -> Topology:
        """The U as three stages for SplitModel's stage costs: device (input), cloud (middle), device (output).
        Its links are only nominal (the simulator owns each device's uplink and downlink)."""
        mbps = min(self.uplink_mbps, self.downlink_mbps)
        return parse_topology({"devices": [{"name": "device-in", "hardware": self.device_hardware},
                                           {"name": "cloud", "hardware": self.cloud_hardware},
                                           {"name": "device-out", "hardware": self.device_hardware}],
                               "links": [{"a": "device-in", "b": "cloud", "mbps": mbps},
                                         {"a": "cloud", "b": "device-out", "mbps": mbps}]}, "device-cloud")

    def draft_topology(self) -> Topology:
        return parse_topology({"devices": [{"name": "device", "hardware": self.device_hardware}]}, "device-cloud")


def parse_device_cloud(data: Any, where: str = "device-cloud", flag: Callable[[str], str] | None = None
                       ) -> DeviceCloud:
    """A DeviceCloud from its YAML dict (checked: its chips exist); every mistake is one line naming the key, or
    what `flag` calls it (the command-line flag that set it, where the flags built the dict)."""
    if not isinstance(data, dict):
        raise PhasewiseError(f"{where}: expected a mapping (devices, device_hardware, cloud_hardware, uplink_mbps, "
                             "downlink_mbps, ...)")
    known = list(DeviceCloud.model_fields)
    unknown = set(data) - set(known)
    if unknown:
        raise PhasewiseError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(known)})")
    name = flag or (lambda key: key)
    try:
        setup = DeviceCloud(**data)
    except ValidationError as exc:
        raise pydantic_message(where, exc, lambda loc: name(str(loc[0])) if loc else None) from None
    from phasewise.specs import load_hardware

    for key in ("device_hardware", "cloud_hardware"):
        try:
            load_hardware(getattr(setup, key))
        except PhasewiseError as exc:
            raise PhasewiseError(f"{where}: {name(key)}: {exc}") from None
    return setup
