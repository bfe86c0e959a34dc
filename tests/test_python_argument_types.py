"""Arguments from Python callers checked as the CLI's parsed flags are: Slo's limits (a string, a bool or None is a
one-line error naming the flag, a TypeError from the comparison before) and Workload's per-request columns."""

import math

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim import Slo


@pytest.mark.parametrize("value", ["1000", True, None, [5]])
def test_a_limit_that_is_not_a_number_names_its_flag(value):
    with pytest.raises(PhasewiseError, match=r"--slo-ttft-ms takes a number of ms > 0"):
        Slo(value, 50)
    with pytest.raises(PhasewiseError, match=r"--slo-tbt-ms takes a number"):
        Slo(1000, 50, value)


def test_numpy_numbers_and_infinity_are_limits():
    slo = Slo(np.float64(250.0), np.int64(20))
    assert slo.describe() == "TTFT <= 250 ms and TPOT <= 20 ms"
    assert Slo(math.inf).describe() == "no SLO"


# Workload's optional per-request columns, from Python callers: checked as the token counts are (one integer >= 0
# per request), not truncated by a cast (0.5 -> 0) nor left a different length from the requests
@pytest.mark.parametrize(("column", "values", "message"), [
    ("priority", [0.5, 1, 2], r"request 0: priority \(0 most urgent\) must be an integer >= 0 \(got 0.5\)"),
    ("priority", [0, -1, 0], r"request 1: priority .* >= 0 \(got -1\)"),
    ("priority", [0, 1], r"priority holds 2 values for 3 requests"),
    ("priority", ["a", "b", "c"], r"priority must be a 1-D array of numbers"),
    ("image_counts", [1.5, 0, 0], r"request 0: image count must be an integer >= 0 \(got 1.5\)"),
    ("image_counts", [0, 0], r"image_counts holds 2 values for 3 requests"),
])
def test_workload_columns_are_checked_not_cast(column, values, message):
    from phasewise.workload import Workload

    with pytest.raises(PhasewiseError, match=message):
        Workload(arrival_s=[0, 1, 2], prompt_tokens=[10, 10, 10], output_tokens=[5, 5, 5], **{column: values})


def test_whole_number_columns_are_kept():
    from phasewise.workload import Workload

    work = Workload(arrival_s=[0, 1, 2], prompt_tokens=[10, 10, 10], output_tokens=[5, 5, 5],
                    priority=[0.0, 1.0, 2.0], image_counts=np.array([1, 0, 2], dtype=np.int32))
    assert work.priority.tolist() == [0, 1, 2] and work.priority.dtype == np.int64
    assert work.image_counts.tolist() == [1, 0, 2]


def test_simulate_prints_a_dash_not_nan_where_no_request_has_a_tpot(run_cli):
    code, out, _ = run_cli("simulate", "--model", "Qwen/Qwen3-0.6B", "--rate", "0.001", "--requests", "3",
                           "--isl", "1", "--osl", "1")
    assert code == 0 and "nan" not in out
    assert "no request produced a second token" in out


def test_estimate_prints_a_cpus_ridge_to_three_significant_digits(run_cli):
    # cpu-local: 1e9 FLOP/s bf16 over 12e9 B/s = 0.0833 FLOP/byte, which a whole-number format printed as 0
    code, out, _ = run_cli("estimate", "--model", "Qwen/Qwen3-0.6B", "--hardware", "cpu-local", "--prompt-len", "16")
    assert code == 0 and "ridge 0.0833 FLOP/byte" in out


def test_a_launch_on_an_nvl72_rack_runs_a_command_per_4_gpu_tray(tmp_path):
    """The launch's node is the machine a command runs on: a GB200 NVL72 rack's compute tray of 4 GPUs
    (interconnect.gpus_per_host), not its 72-GPU NVLink domain, so a TP8 instance spans two trays, 4 GPUs each."""
    from phasewise.apps.launch import launch_commands
    from phasewise.sim.deployment import build_deployment

    dep = build_deployment({"model": "meta-llama/Llama-3.1-70B", "instances": [{"hardware": "gb200", "tp": 8}]})
    workers, _, _ = launch_commands(dep)
    assert [c.node for c in workers] == [0, 1]
    assert "on nodes 0-1 (4 GPUs on each)" in workers[0].comments[0]
