"""apps/cli.py, plan/strategies.py and specs/hardware.py split along their seams (one idea a module): estimate and
simulate in cli_estimate.py and cli_simulate.py, registered on the same app before the other commands (--help lists
them in the same order); one pass of the strategy enumeration in strategy_enumeration.py; the hardware models in
hardware_spec.py and the checks of an entry's figures in hardware_checks.py. Every name the three defined is still
importable there and is the very object its new module defines, and what stayed reads the moved names from its own
module (a patch on strategies._enumerate still reaches enumerate_strategies)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

import phasewise.apps.cli as cli
import phasewise.plan.strategies as strategies
import phasewise.specs.hardware as hardware
from phasewise.apps import cli_estimate, cli_simulate
from phasewise.errors import PhasewiseError
from phasewise.plan import strategy_enumeration
from phasewise.specs import engine_profile, hardware_checks, hardware_spec

MOVED = {
    cli: {
        cli_estimate: ["estimate_cmd"],
        cli_simulate: ["simulate_cmd"],
    },
    strategies: {
        strategy_enumeration: ["_Enumeration", "CAPPED"],
    },
    hardware: {
        hardware_spec: ["PEAK_DTYPES", "IEEE_FP32_ON_VECTOR_KINDS", "Efficiency", "Interconnect", "HardwareSpec",
                        "HOST_MEMORY_RESERVE_BYTES"],
        hardware_checks: ["_FIGURE_RANGES", "_figure", "check_figures", "PARTS_FIGURES", "refuse_no_figures"],
        # not hardware's own since an earlier split, but imported from it (specs/__init__.py, tests): still there
        engine_profile: ["PRESET_PROFILE_FIELDS", "DeepEPBuffers", "EngineProfile", "UnfusedElementwise",
                         "UnfusedKernels", "engine_file_preset", "load_engine"],
    },
}
# what stays where it was: the entry point, the enumeration's driver and the chip lookups
STAYED = {
    cli: ["empty_values", "main"],
    strategies: ["ACROSS_NODES", "WIDE_EP", "DOES_NOT_DIVIDE", "flag_words", "enumerate_strategies", "_next_step",
                 "wide_ep_sizes", "plan_engines", "_across_chips", "_across_engines", "_combined", "unknown_choice",
                 "_enumerate"],
    hardware: ["DEFAULTS_NOTE", "build_hardware", "chip_caveats", "hardware_names", "parts_chips", "catalog_key",
               "load_hardware", "catalog_entry_yaml", "hardware_list", "chip_identity", "chips_apart"],
}
# what other modules import from the three and the old modules held as imports (plan/options.py's names)
IMPORTED = {
    cli: ["app"],
    strategies: ["NoStrategyFits", "PlanOptions", "Strategy", "ROUTERS", "POLICIES", "OptionName"],
    hardware: [],
}
# `phasewise --help`'s commands, in its order (before the split as after)
COMMANDS = ["estimate", "simulate", "plan", "sweep", "edge", "device-cloud", "models", "hardware", "calibrate",
            "validate", "fit-engine", "reproduce", "serve"]


@pytest.mark.parametrize("old", [cli, strategies, hardware], ids=lambda m: m.__name__)
def test_the_old_modules_re_export_every_moved_name_as_the_same_object(old):
    for new, names in MOVED[old].items():
        for name in names:
            assert getattr(old, name) is getattr(new, name), f"{old.__name__}.{name}"
    for name in IMPORTED[old]:
        assert hasattr(old, name), f"{old.__name__}.{name}"


@pytest.mark.parametrize("old", [cli, strategies, hardware], ids=lambda m: m.__name__)
def test_what_stayed_is_defined_where_it_was(old):
    for name in STAYED[old]:
        value = getattr(old, name)
        assert getattr(value, "__module__", old.__name__) == old.__name__, name


def test_the_commands_register_in_the_order_help_lists_them():
    """cli.py imports cli_estimate and cli_simulate before cli_plan and the others: typer lists the commands in the
    order they registered, so `phasewise --help` is unchanged; estimate and simulate run their new modules' code."""
    command = typer.main.get_command(cli.app)
    assert list(command.list_commands(None)) == COMMANDS
    callbacks = {c.name: c.callback for c in cli.app.registered_commands}
    assert callbacks["estimate"] is cli_estimate.estimate_cmd and callbacks["simulate"] is cli_simulate.simulate_cmd
    # simulate reads its own signature (changed_options(simulate_cmd, ...)): the registered function's
    assert cli_simulate.simulate_cmd.__globals__ is vars(cli_simulate)
    assert "simulate_cmd" in cli_simulate.simulate_cmd.__code__.co_names


def test_the_moved_commands_answer_as_before(run_cli):
    """estimate's and simulate's one-line refusals, through main() (tests/conftest.py run_cli), from their modules."""
    code, out, err = run_cli("estimate", "--precision", "fp7")
    assert code == 2 and err.startswith("error: --precision: ") and "Traceback" not in err
    code, out, err = run_cli("simulate", "--format", "xlsx")
    assert (code, err.strip()) == (2, "error: --format 'xlsx' is not one of csv, parquet")
    code, out, err = run_cli("estimate", "--model", "Qwen/Qwen3-0.6B", "--json")
    assert code == 0 and '"prefill' in out


def test_the_enumeration_s_driver_reads_its_names_from_strategies(monkeypatch):
    """enumerate_strategies and _next_step call strategies' _enumerate, which builds strategy_enumeration's
    _Enumeration: a patch on strategies._enumerate still reaches the search; a group too large is recognised by the
    same CAPPED words its pruned line ends with."""
    assert strategies.enumerate_strategies.__globals__ is vars(strategies)
    assert "_enumerate" in strategies.enumerate_strategies.__code__.co_names
    assert "_Enumeration" in strategies._enumerate.__code__.co_names
    assert strategies.CAPPED is strategy_enumeration.CAPPED

    def none(*args, **kwargs):
        return [], ["patched: nothing here"]

    monkeypatch.setattr(strategies, "_enumerate", none)
    opts = strategies.PlanOptions(tp_options=(1,), tp_across_nodes=False)
    with pytest.raises(strategies.NoStrategyFits, match="patched: nothing here"):
        strategies.enumerate_strategies("meta-llama/Llama-3.1-8B", "h100-sxm", 1, opts)


def test_the_enumeration_still_finds_and_prunes():
    found, pruned = strategies.enumerate_strategies(
        "meta-llama/Llama-3.1-8B", "h100-sxm", 2, strategies.PlanOptions(tp_options=(1, 2), disaggregated=True))
    assert {s.kind for s in found} == {"collocated", "disaggregated"}
    assert all(isinstance(s, strategies.Strategy) for s in found)


def test_the_hardware_models_are_whole_in_their_new_module():
    """HardwareSpec's annotations name Interconnect, Efficiency, ChipParts and Substrate (strings under
    `from __future__ import annotations`): resolved in hardware_spec.py; a catalog chip and a chip from parts load
    as before (chip_cost.py reads Interconnect through specs.hardware)."""
    fields = hardware.HardwareSpec.model_fields
    assert fields["interconnect"].annotation is hardware.Interconnect
    assert fields["efficiency"].annotation is hardware.Efficiency
    chip = hardware.load_hardware("h100-sxm")
    assert type(chip) is hardware.HardwareSpec and isinstance(chip.interconnect, hardware.Interconnect)
    parts = hardware.load_hardware(hardware.parts_chips()[0])
    assert parts.parts is not None and isinstance(parts.efficiency, hardware.Efficiency)


def test_a_user_entry_is_checked_as_before():
    entry = {k: v for k, v in hardware.catalog_entry_yaml("h100-sxm")["hardware"]["h100-sxm"].items()}
    with pytest.raises(PhasewiseError, match="memory_bandwidth_bytes_per_s is 3.35 bytes/s, below 1e6 bytes/s"):
        hardware.build_hardware("mine", dict(entry, memory_bandwidth_bytes_per_s=3.35), "hardware file 'x'")
    with pytest.raises(PhasewiseError, match="a chip needs either parts"):
        hardware.build_hardware("mine", {"name": "x", "interconnect": entry["interconnect"]}, "hardware file 'x'")
    mine = hardware.build_hardware("mine", {k: v for k, v in entry.items() if k not in ("efficiency",
                                                                                       "efficiency_sources")}, "f")
    assert hardware.DEFAULTS_NOTE.format(kind="gpu") in mine.caveat


def test_the_split_modules_stay_short():
    for old, homes in MOVED.items():
        for module in (old, *homes):
            lines = len(Path(module.__file__).read_text().splitlines())
            assert lines <= 400, f"{Path(module.__file__).name}: {lines} lines"
