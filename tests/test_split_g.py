"""plan/sweep.py, sim/api.py and apps/simulate_view.py split along their seams (one idea a module): every name the
three defined is still importable there and is the very object its new module defines, and the names tests patch on
them are the ones the code there reads (a monkeypatch on sweep.run_all or sweep.enumerate_strategies still reaches
run_sweep, one on simulate_view.PROGRESS_AFTER_S still reaches progress_after)."""

from __future__ import annotations

from pathlib import Path

import pytest

import phasewise.apps.simulate_view as simulate_view
import phasewise.plan.sweep as sweep
import phasewise.sim.api as api
from phasewise.apps import output_checks, records_writer
from phasewise.plan import sweep_config, sweep_grid, sweep_options, sweep_output, sweep_rows, sweep_workloads
from phasewise.sim import deployment_flags, flag_checks, flag_fields, run_notes

MOVED = {
    sweep: {
        sweep_config: ["SweepWorkload", "SweepSlo", "SweepConfig", "load_sweep"],
        sweep_workloads: ["sweep_field", "_IMAGE_KEYS", "_keyed", "_entry", "_workloads", "_check_model",
                          "_cells_refused"],
        sweep_options: ["_options", "_refuse_flags", "_PLAN_OPTIONS", "SIZE_LISTS", "_check_ranges", "sweep_key",
                        "sweep_words"],
        sweep_grid: ["_check_grid", "model_identity", "_check_names"],
        sweep_rows: ["_PLAN_FIGURES", "_VERIFICATION", "_row", "searched", "_per_joule", "_cluster_figures"],
        sweep_output: ["check_out", "write_rows"],
    },
    api: {
        deployment_flags: ["deployment_from_flags", "flag_of", "FlagOf", "flag_named", "flag_names",
                           "deployment_flag_names", "TP_BESIDE_ROLE_TPS", "HARDWARE_BESIDE_ROLE_HARDWARE",
                           "refuse_hardware_beside_role_hardware"],
        flag_fields: ["ROLE_FLAGS", "SPECULATIVE_FLAGS", "AUTOSCALE_FLAGS", "ENCODER_FLAGS", "POOL_FLAGS",
                      "OFFLOAD_FLAGS", "BLOCK_FLAGS", "refuse_beside_deployment", "YAML_PATHS", "yaml_path"],
        # not api's own, but imported from it (apps/cli_plan.py, apps/dllm_view.py, tests): still there
        flag_checks: ["autoscale_flags", "host_kv_cache_bytes"],
        run_notes: ["trace_notes"],
    },
    simulate_view: {
        output_checks: ["RECORDS", "SUMMARY", "CHECKPOINT_SUFFIXES", "input_files", "named_in_deployment",
                        "as_written", "_identity", "refuse_overwriting_inputs", "records_paths", "check_records_out",
                        "table_path"],
        records_writer: ["write_records", "staging_path", "discard", "signals_held", "note_others", "write_table"],
    },
}
# what stays where it was: the code that reads the names tests patch on the module, and the entry points
STAYED = {
    sweep: ["run_sweep", "_routes", "plan_figures"],
    api: ["SimSpec", "MAX_REQUESTS", "build", "DLLM_ARGUMENTS", "run"],
    simulate_view: ["PROGRESS_AFTER_S", "progress_after", "ms_cell", "render_summary"],
}


@pytest.mark.parametrize("old", [sweep, api, simulate_view], ids=lambda m: m.__name__)
def test_the_old_modules_re_export_every_moved_name_as_the_same_object(old):
    for new, names in MOVED[old].items():
        for name in names:
            assert getattr(old, name) is getattr(new, name), f"{old.__name__}.{name}"


@pytest.mark.parametrize("old", [sweep, api, simulate_view], ids=lambda m: m.__name__)
def test_what_stayed_is_defined_where_it_was(old):
    for name in STAYED[old]:
        value = getattr(old, name)
        assert getattr(value, "__module__", old.__name__) == old.__name__, name


def test_the_names_tests_patch_are_read_from_the_module_they_patch():
    """monkeypatch.setattr(sweep, X) reaches only code whose globals are sweep's: run_sweep reads run_all
    (test_sweep_report_review_fixes) and enumerate_strategies (test_sweep_review_fixes); cli_plan reads run_sweep off
    sweep at call time (test_plan, test_output_review_fixes). progress_after reads simulate_view's PROGRESS_AFTER_S
    (test_progress). plan_figures, run in worker processes, keeps its place (pickled by its module's name)."""
    assert sweep.run_sweep.__globals__ is vars(sweep)
    assert sweep.plan_figures.__globals__ is vars(sweep) and sweep.plan_figures.__module__ == "phasewise.plan.sweep"
    for name in ("run_all", "enumerate_strategies", "plan_figures", "evaluate"):
        assert name in sweep.run_sweep.__code__.co_names and hasattr(sweep, name), name
    progress_after = simulate_view.progress_after.__wrapped__  # contextmanager's generator function
    assert progress_after.__globals__ is vars(simulate_view)
    inner = [c for c in progress_after.__code__.co_consts if hasattr(c, "co_names")]  # its progress() callback
    assert any("PROGRESS_AFTER_S" in code.co_names for code in inner)


def test_a_patch_on_sweep_enumerate_strategies_still_reaches_run_sweep(monkeypatch):
    from phasewise.plan.strategies import NoStrategyFits

    def none_fits(*args, **kwargs):
        raise NoStrategyFits("patched")

    monkeypatch.setattr(sweep, "enumerate_strategies", none_fits)
    cfg = sweep.SweepConfig(models=["meta-llama/Llama-3.1-8B"], hardware=["h100-sxm"], gpus=1,
                            workloads=[{"name": "w", "isl": 128, "osl": 16}], slo={"ttft_ms": 1000},
                            strategies={"tp_options": [1], "chunk_sizes": [512], "disaggregated": False})
    with pytest.raises(NoStrategyFits, match="patched"):
        sweep.run_sweep(cfg, workers=1)


def test_the_deployment_flags_still_name_every_flag_and_place():
    """deployment_flag_names reads deployment_from_flags' signature in its new module; the names are the same list."""
    names = api.deployment_flag_names()
    assert "tp" in names and "autoscale_min" in names and "deployment" not in names
    assert api.flag_named("tp") == "--tp" and api.yaml_path("autoscale_min") == "autoscale.min_replicas"
    assert api.flag_of([{"role": "prefill"}])(("instances", 0, "replicas")) == "--prefill-workers"


def test_the_split_modules_stay_short():
    for old, homes in MOVED.items():
        for module in (old, *homes):
            if module in (flag_checks, run_notes):  # not split here
                continue
            lines = len(Path(module.__file__).read_text().splitlines())
            assert lines <= 400, f"{Path(module.__file__).name}: {lines} lines"
