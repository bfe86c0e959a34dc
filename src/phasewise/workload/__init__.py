"""Workloads: requests with arrival times and lengths, from distributions, closed loops or traces."""

from phasewise.workload.generators import ClosedLoop, LengthDist, open_loop
from phasewise.workload.request import Workload
from phasewise.workload.traces import load_trace

__all__ = ["ClosedLoop", "LengthDist", "Workload", "load_trace", "open_loop"]
