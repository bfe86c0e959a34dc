"""A text option given as an empty string is a one-line error naming it, on every command alike: typer hands '' on
as "not given" (simulate --out '' wrote nothing) or as a name (plan --export '' skipped the export) otherwise."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("args, flag", [
    (["simulate", "--rate", "1", "--requests", "5", "--out", ""], "--out"),
    (["plan", "--gpus", "1", "--export", ""], "--export"),
    (["plan", "--gpus", "1", "--report="], "--report"),
    (["reproduce", "hat", "--report", ""], "--report"),
    (["edge", "--topology", ""], "--topology"),
    (["device-cloud", "--setup", ""], "--setup"),
    (["fit-engine", "points.yaml", "--out", ""], "--out"),
    (["simulate", "--rate", "1", "--requests", "5", "--engine", "  "], "--engine"),
])
def test_an_empty_text_option_is_one_line_naming_it(run_cli, args, flag):
    code, out, err = run_cli(*args)
    assert code == 2 and err == f"error: {flag} is empty: give a value or leave the flag out\n"


def test_an_option_whose_default_is_empty_may_be_given_empty(run_cli):
    """--precisions' default is '' (the model's own precision): given empty, it means that default."""
    code, _, err = run_cli("plan", "--gpus", "1", "--tp-options", "1", "--no-disagg", "--precisions", "",
                           "--chunk-sizes", "2048", "--batch-caps", "256", "--isl", "256", "--osl", "32")
    assert "is empty" not in err


def test_device_cloud_refuses_an_acceptance_without_drafting(run_cli):
    """--draft-tokens 0 decodes plain autoregressively: an --acceptance beside it (even at its default's value) had
    been accepted and changed nothing."""
    for value in ("0.1", "0.8"):
        code, _, err = run_cli("device-cloud", "--draft-tokens", "0", "--acceptance", value)
        assert code == 2 and err.startswith("error: --acceptance needs --draft-tokens >= 1") and err.count("\n") == 1
