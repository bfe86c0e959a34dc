"""SPAD-1's re-allocation check moves a fleet between two workloads, also where `traces` names one; its setup text
quotes no figure that a change elsewhere would leave stale."""

from __future__ import annotations

import re

import pytest

from phasewise.errors import PhasewiseError
from phasewise.scenarios import get_scenario
from phasewise.scenarios.spad import SETUP, reallocation_traces


def test_one_trace_reallocates_toward_the_other_azure_trace():
    """A fleet sized for a trace and serving the same trace only repeats the cluster-cost check (it had printed
    'sized for azure-conv, serving azure-conv ... cost ratio 0.65'): with one trace the check moves it to the
    other Azure trace, azure-conv for a trace of neither; two or more traces move between themselves."""
    assert reallocation_traces(["azure-conv"]) == ["azure-conv", "azure-code"]
    assert reallocation_traces(["azure-code"]) == ["azure-code", "azure-conv"]
    assert reallocation_traces(["mooncake"]) == ["mooncake", "azure-conv"]
    assert reallocation_traces(["azure-conv", "azure-code"]) == ["azure-conv", "azure-code"]
    assert reallocation_traces(["azure-code", "mooncake"]) == ["azure-code", "mooncake"]


def test_a_trace_named_twice_is_a_one_line_error():
    with pytest.raises(PhasewiseError, match="--set traces='azure-conv,azure-code,azure-conv' names azure-conv twice") \
            as err:
        get_scenario("spad").resolve({"traces": "azure-conv,azure-code,azure-conv"})
    assert "\n" not in str(err.value)


def test_the_window_text_quotes_no_figures():
    """The window's help had quoted cost / TDP ratios at 15 / 30 / 60 s that the next change to the model left
    stale (0.62 / 1.08 quoted, 0.65 / 1.24 run): it says what a longer window does and where the figures are."""
    text = SETUP["window_s"].source
    assert not re.search(r"\d\.\d", text) and "%" not in text, text
    assert "README" in text
