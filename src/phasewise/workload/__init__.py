"""Workloads: requests with arrival times and lengths, from distributions, closed loops or traces."""

from phasewise.workload.clients import BenchmarkClient, client_names, client_workload, load_client
from phasewise.workload.generators import ClosedLoop, LengthDist, open_loop
from phasewise.workload.mooncake import reusable_prompt_share
from phasewise.workload.request import Workload
from phasewise.workload.traces import load_trace

__all__ = ["BenchmarkClient", "ClosedLoop", "LengthDist", "Workload", "client_names", "client_workload", "load_client",
           "load_trace", "open_loop", "reusable_prompt_share"]
