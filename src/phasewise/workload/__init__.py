"""Workloads: requests with arrival times and lengths, from distributions, closed loops or traces."""

from phasewise.workload.clients import BenchmarkClient, client_names, client_workload, load_client
from phasewise.workload.generators import (
    DEFAULT_ISL,
    DEFAULT_OSL,
    MAX_LOGNORMAL_SPREAD,
    ClosedLoop,
    LengthDist,
    check_length_flags,
    flag_name,
    open_loop,
    poisson_arrivals,
)
from phasewise.workload.images import ImageInputs, image_inputs
from phasewise.workload.mooncake import reusable_prompt_share
from phasewise.workload.request import Workload, check_arrival_span, prefix_copy, prefix_stride
from phasewise.workload.traces import load_trace

__all__ = ["DEFAULT_ISL", "DEFAULT_OSL", "MAX_LOGNORMAL_SPREAD", "BenchmarkClient", "ClosedLoop", "ImageInputs", "image_inputs", "LengthDist",
           "check_arrival_span", "check_length_flags", "flag_name", "Workload", "client_names", "client_workload", "load_client",
           "load_trace", "open_loop", "poisson_arrivals", "prefix_copy", "prefix_stride", "reusable_prompt_share"]
