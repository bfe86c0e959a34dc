"""Slo's limits from Python callers: a string, a bool or None is a one-line error naming the flag, as the CLI's
parsed numbers are checked for > 0 (a TypeError from the comparison before)."""

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
