"""`plan --hardware A,B,C`: each chip's strategies on the same GPU budget compete in one ranking, and the
goodput-per-dollar objective prices every group's chips at their own rate."""

from __future__ import annotations

import json

import pytest
import yaml
from rich.console import Console

from phasewise.apps.plan_view import render_plan
from phasewise.apps.report import write_report
from phasewise.errors import PhasewiseError
from phasewise.plan import GoodputResult, PlanOptions, WorkloadSpec, enumerate_strategies, plan
from phasewise.plan.chip_budgets import chip_labels, strategy_chip
from phasewise.plan.export import plan_header
from phasewise.plan.goodput import capacity_estimate
from phasewise.plan.planner import PRESCREEN, objective_per, objective_value, prescreen
from phasewise.sim import Slo
from phasewise.specs import load_hardware

M = "meta-llama/Llama-3.1-8B"
ONE_LAYOUT = PlanOptions(tp_options=(1,), chunk_sizes=(1024,), ratios=((1, 1),))


def _chips(deployment: dict) -> set[str]:
    return {g["hardware"] for g in deployment["instances"]}


def test_each_chips_strategies_are_named_after_it_and_run_on_it():
    strategies, _ = enumerate_strategies(M, "h100-sxm,b200", 2, ONE_LAYOUT)
    for chip in ("h100-sxm", "b200"):
        mine = [s for s in strategies if s.name.startswith(chip + " ")]
        alone, _ = enumerate_strategies(M, chip, 2, ONE_LAYOUT)
        assert {s.name for s in mine} == {f"{chip} {s.name}" for s in alone}  # the chip's own plan, renamed
        assert all(strategy_chip(s) == chip and _chips(s.deployment) == {chip} for s in mine)
    assert len(strategies) == len({s.name for s in strategies})
    assert all(strategy_chip(s) == "" for s in enumerate_strategies(M, "b200", 2, ONE_LAYOUT)[0])  # one chip: as before


def test_a_chip_nothing_fits_on_is_a_pruned_line_and_none_anywhere_one_error():
    """Llama-3.1-70B in BF16 (141 GB) on one GPU: not on an 80 GB A100, on a 288 GB B300."""
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False, tp_across_nodes=False)
    strategies, pruned = enumerate_strategies("meta-llama/Llama-3.1-70B", "a100-sxm-80gb,b300", 1, opts)
    assert strategies and {strategy_chip(s) for s in strategies} == {"b300"}
    assert any(line.startswith("a100-sxm-80gb: no strategy fits") for line in pruned)
    with pytest.raises(PhasewiseError, match="no strategy fits on any of a100-sxm-80gb, l40s: a100-sxm-80gb: "):
        enumerate_strategies("meta-llama/Llama-3.1-70B", "a100-sxm-80gb,l40s", 1, opts)


@pytest.mark.parametrize("hardware, message", [
    ("h100-sxm,,b200", r"--hardware 'h100-sxm,,b200': an empty name in the list"),
    ("b200,b200", "names b200 twice"),
    ("b200,nosuch-gpu", "unknown hardware 'nosuch-gpu'"),
    ("b200,B200", "--hardware names one chip twice: b200 and B200"),
])
def test_chip_lists_are_checked(hardware, message):
    with pytest.raises(PhasewiseError, match=message):
        enumerate_strategies(M, hardware, 2, ONE_LAYOUT)


def test_phase_chip_pairs_belong_to_a_plan_on_one_chip():
    with pytest.raises(PhasewiseError, match=r"--decode-hardware pairs chips for the phases of a plan on one "
                                             r"--hardware; with several --hardware chips \(h100-sxm, b200\)"):
        enumerate_strategies(M, "h100-sxm,b200", 2, PlanOptions(tp_options=(1,), decode_hardware=("h200-sxm",)))


def test_goodput_per_dollar_prices_each_groups_chips():
    """A disaggregated strategy with its prefill on H100s and its decode on B200s costs each at its own $/GPU-hour
    (before, the plan's --hardware rate for every GPU)."""
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), ratios=((2, 1),), decode_hardware=("b200",))
    strategy = next(s for s in enumerate_strategies(M, "h100-sxm", 3, opts)[0] if s.kind == "disaggregated")
    assert [(g["role"], g["hardware"], g["replicas"]) for g in strategy.deployment["instances"]] == \
        [("prefill", "h100-sxm", 2), ("decode", "b200", 1)]
    result = GoodputResult(strategy, goodput_rps=10.0, capacity_estimate_rps=10.0, binding="", at_goodput={})
    per_hour = 2 * load_hardware("h100-sxm").price_per_hour_usd + load_hardware("b200").price_per_hour_usd
    assert objective_value("goodput-per-dollar", result) == pytest.approx(10.0 * 3600 / per_hour)


def test_every_chip_that_meets_the_slos_is_ranked_and_a_slow_chip_is_not_prescreened_out(tmp_path):
    """An RTX A6000 (768 GB/s, $1.09/h) beside an H100 (3.35 TB/s, $3.99/h): its analytic capacity (11 req/s
    here) is under 40 % of the H100's best (54), which pruned it in a single pool; weighed against its own best it
    is simulated, and its best is refined and verified beside the overall top 1, so the ranking holds both chips."""
    work = WorkloadSpec((512,), (64,), seed=0, name="512/64")
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False)
    caps = {}
    for s in enumerate_strategies(M, "h100-sxm,a6000", 1, opts)[0]:
        caps[strategy_chip(s)] = max(caps.get(strategy_chip(s), 0.0), capacity_estimate(s, work))
    assert caps["a6000"] < PRESCREEN * caps["h100-sxm"]  # what one pool's pre-screen would have pruned
    result = plan(M, "h100-sxm,a6000", 1, Slo(2000, 100), work, objective="goodput-per-dollar", opts=opts,
                  refine=1, workers=1)
    assert {strategy_chip(r.strategy) for r in result.screened} == {"h100-sxm", "a6000"}
    assert {strategy_chip(r.strategy) for r in result.ranked} == {"h100-sxm", "a6000"}
    scores = [result.score(r) for r in result.ranked]
    assert scores == sorted(scores, reverse=True)
    assert result.budget() == "1 GPU of h100-sxm or a6000"
    for rank, r in enumerate(result.ranked, start=1):  # an exported file's header names the strategy's own chips
        assert f"{M} on 1 x {strategy_chip(r.strategy)}; workload" in plan_header(result, r, rank)[1]
    best = result.best_per_chip()  # the answer to "which GPU": each chip's best, in ranking order
    first_rows = []  # each chip's first ranked row (a chip may hold several: those refined within the cut's step)
    for i, r in enumerate(result.ranked, start=1):
        if strategy_chip(r.strategy) not in [chip for chip, _ in first_rows]:
            first_rows.append((strategy_chip(r.strategy), i))
    assert [(chip, rank) for chip, rank, _ in best] == first_rows
    console = Console(record=True, width=200)
    render_plan(console, result)
    line = next(t for t in console.export_text().splitlines() if t.startswith("best per chip: "))
    assert all(f"{chip} #{rank} {result.score(r):.4g} req/$" in line for chip, rank, r in best)
    page = write_report(result, {}, tmp_path / "plan.html").read_text()
    assert 'id="chips"' in page and "Each chip's best strategy by goodput-per-dollar" in page


def test_plan_cli_across_chips(run_cli):
    code, out, err = run_cli("plan", "--model", M, "--hardware", "h100-sxm,b200", "--gpus", "1", "--tp-options", "1",
                             "--chunk-sizes", "1024", "--no-disagg", "--isl", "512", "--osl", "64", "--top", "1",
                             "--workers", "1", "--objective", "goodput-per-dollar", "--json")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert json.loads(out)["budget"] == "1 GPU of h100-sxm or b200"  # --json says the budget too
    assert {row["strategy"].split()[0] for row in rows} == {"h100-sxm", "b200"}
    for row in rows:
        chip = row["strategy"].split()[0]
        assert row["price_per_hour_usd"] == pytest.approx(load_hardware(chip).price_per_hour_usd * row["gpus"])
        assert row["objective"] == pytest.approx(row["goodput_rps"] * 3600 / row["price_per_hour_usd"])
    code, _, err = run_cli("plan", "--model", M, "--hardware", "h100-sxm,b200", "--decode-hardware", "b200")
    assert code == 2 and "--decode-hardware pairs chips" in err and len(err.strip().splitlines()) == 1


def test_a_precision_a_chip_has_no_tensor_path_for_is_pruned_on_that_chip():
    """NVFP4 beside FP8 on an H100 (no FP4 path) and a B200: the H100 keeps its FP8 strategies with a pruned line
    naming the missing path, the B200 keeps both; on the H100 alone NVFP4 by itself is still the one-line error."""
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False, precisions=("fp8", "nvfp4"))
    strategies, pruned = enumerate_strategies(M, "h100-sxm,b200", 1, opts)
    kinds = {(strategy_chip(s), s.details["precision"]) for s in strategies}
    assert kinds == {("h100-sxm", "fp8"), ("b200", "fp8"), ("b200", "nvfp4")}
    assert "h100-sxm: nvfp4: hardware 'h100-sxm' has no fp4 compute path" in "\n".join(pruned)
    alone, _ = enumerate_strategies(M, "h100-sxm", 1, opts)
    assert {s.details["precision"] for s in alone} == {"fp8"}
    with pytest.raises(PhasewiseError, match="hardware 'h100-sxm' has no fp4 compute path"):
        enumerate_strategies(M, "h100-sxm", 1, PlanOptions(tp_options=(1,), precisions=("nvfp4",)))


def test_a_users_chip_file_is_named_by_its_stem_unless_that_is_ambiguous(tmp_path):
    """An architect's chip beside catalog chips: `--hardware chips/my_chip.yaml,h100-sxm` names its strategies
    `my_chip ...` (the deployment keeps the path, to load it again); two files of one stem, or a stem that is a
    catalog key, keep their paths."""
    entry = load_hardware("h100-sxm").model_dump(mode="json", exclude={"key", "efficiency", "parts"})
    mine = tmp_path / "my_chip.yaml"
    mine.write_text(yaml.safe_dump(dict(entry, name="my chip")))
    strategies, _ = enumerate_strategies(M, f"{mine},h100-sxm", 1, ONE_LAYOUT)
    ours = [s for s in strategies if s.name.startswith("my_chip ")]
    assert ours and all(strategy_chip(s) == "my_chip" and _chips(s.deployment) == {str(mine)} for s in ours)
    assert chip_labels(["a/x.yaml", "b/x.yaml", "c/b200.yaml", "H100-SXM"]) == {
        "a/x.yaml": "a/x.yaml", "b/x.yaml": "b/x.yaml", "c/b200.yaml": "c/b200.yaml", "H100-SXM": "h100-sxm"}
    with pytest.raises(PhasewiseError, match="names one chip twice: .*my_chip.yaml and .*my_chip.yaml"):
        enumerate_strategies(M, f"{mine},{tmp_path}/../{tmp_path.name}/my_chip.yaml", 1, ONE_LAYOUT)


def test_a_users_chip_for_one_phase_is_named_by_its_stem_and_the_header_names_each_phases_chips(tmp_path):
    """`--decode-hardware chips/my_decode.yaml,h100-sxm`: the disaggregated strategies on the file are named
    `h100-sxm/my_decode` (their deployments keep the path); the plan's header says which chips each phase may run
    on, where it said `4 x h100-sxm` as if the plan used nothing else."""
    from phasewise.plan.planner import PlanResult

    entry = load_hardware("h100-sxm").model_dump(mode="json", exclude={"key", "efficiency", "parts"})
    mine = tmp_path / "my_decode.yaml"
    mine.write_text(yaml.safe_dump(dict(entry, name="my decode chip")))
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), ratios=((1, 1),), decode_hardware=(str(mine), "h100-sxm"))
    strategies, _ = enumerate_strategies(M, "h100-sxm", 2, opts)
    ours = [s for s in strategies if s.details.get("decode_hardware") == str(mine)]
    assert ours and all(" h100-sxm/my_decode " in s.name and str(mine) not in s.name for s in ours)
    assert all(str(mine) in _chips(s.deployment) for s in ours)
    result = PlanResult(M, "h100-sxm", 4, Slo(1000, 50), 0.9, "power", "w", [], [], [],
                        phase_chips=(("h100-sxm", "spad-prefill-chip"), (str(mine),)))
    assert result.budget() == (f"4 GPUs (h100-sxm; disaggregated: prefill on h100-sxm or spad-prefill-chip, "
                               f"decode on {mine})")
    decode_only = PlanResult(M, "h100-sxm", 4, Slo(1000, 50), 0.9, "power", "w", [], [], [],
                             phase_chips=((), ("a6000",)))
    assert decode_only.budget() == "4 GPUs (h100-sxm; disaggregated: prefill on h100-sxm, decode on a6000)"


def test_estimate_puts_chips_side_by_side(run_cli):
    """`estimate --hardware h100-sxm,b200,a100-sxm-80gb --precision fp8`: each chip's row is its own estimate's
    figures with its price and tokens per dollar; the A100 (no FP8 path) is a row saying so; no chip that runs it
    is one error line after the rows."""
    args = ("estimate", "--model", M, "--tp", "2", "--precision", "fp8", "--batch", "8", "--prompt-len", "512")
    code, out, err = run_cli(*args, "--hardware", "h100-sxm,b200,a100-sxm-80gb", "--json")
    assert code == 0, err
    rows = json.loads(out)["chips"]
    assert [r["hardware"] for r in rows] == ["h100-sxm", "b200", "a100-sxm-80gb"]
    for row in rows[:2]:
        code, alone, _ = run_cli(*args, "--hardware", row["hardware"], "--json")
        assert code == 0 and row["estimate"] == json.loads(alone)
        per_hour = 2 * load_hardware(row["hardware"]).price_per_hour_usd
        assert row["fits"] and row["price_per_hour_usd"] == pytest.approx(per_hour)
        assert row["decode_tokens_per_dollar"] == pytest.approx(row["estimate"]["decode"]["tokens_per_s"] * 3600
                                                                / per_hour)
    assert not rows[2]["fits"] and "has no fp8 compute path" in rows[2]["error"]
    code, out, err = run_cli(*args, "--hardware", "a100-sxm-80gb,a6000")
    assert code == 2 and "a6000" in out and len(err.strip().splitlines()) == 1
    assert "no chip of --hardware a100-sxm-80gb,a6000 runs it" in err
    code, _, err = run_cli(*args, "--hardware", "b200,B200")  # one chip twice: as plan says it
    assert code == 2 and err.strip() == "error: --hardware names one chip twice: b200 and B200"


# --- --chip-gpus: each chip its own GPU budget -------------------------------------------------------------------
def _group_gpus(deployment: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in deployment["instances"]:
        out[g["hardware"]] = out.get(g["hardware"], 0) + g["tp"] * g.get("pp", 1) * g.get("replicas", 1)
    return out


def test_chip_budgets_across_chips_give_each_chip_its_own():
    from dataclasses import replace

    opts = replace(ONE_LAYOUT, tp_options=(1, 2), chip_gpus=(("h100-sxm", 6), ("b200", 2)))
    strategies, _ = enumerate_strategies(M, "h100-sxm,b200", 8, opts)
    used = {chip: [_group_gpus(s.deployment)[chip] for s in strategies if strategy_chip(s) == chip]
            for chip in ("h100-sxm", "b200")}
    assert max(used["h100-sxm"]) == 6 and max(used["b200"]) == 2  # filled to each budget, never beyond
    alone, _ = enumerate_strategies(M, "b200", 2, replace(opts, chip_gpus=()))
    assert {s.name for s in strategies if strategy_chip(s) == "b200"} == {f"b200 {s.name}" for s in alone}


def test_chip_budgets_bound_each_disaggregated_group_on_its_chip():
    """Prefill on H100s (budget 6), decode on B200s (budget 2): each group within its chip's budget, the xPyD unit
    replicated while both fit; without --chip-gpus the two groups share --gpus, as before."""
    from dataclasses import replace

    opts = replace(ONE_LAYOUT, tp_options=(1, 2), ratios=((1, 1), (2, 1), (3, 1)), prefill_hardware=("h100-sxm",),
                   decode_hardware=("b200",))
    budgeted, _ = enumerate_strategies(M, "h100-sxm", 8, replace(opts, chip_gpus=(("h100-sxm", 6), ("b200", 2))))
    disagg = [s for s in budgeted if s.kind == "disaggregated"]
    assert disagg
    for s in disagg:
        used = _group_gpus(s.deployment)
        assert used["h100-sxm"] <= 6 and used["b200"] <= 2, (s.name, used)
        d = s.details
        unit_p, unit_d = d["prefill"] // s.units * d["prefill_tp"], d["decode"] // s.units * d["decode_tp"]
        assert used["h100-sxm"] + unit_p > 6 or used["b200"] + unit_d > 2  # no room for another unit
    assert any(_group_gpus(s.deployment) == {"h100-sxm": 6, "b200": 2} for s in disagg)
    shared, _ = enumerate_strategies(M, "h100-sxm", 8, opts)
    assert all(sum(_group_gpus(s.deployment).values()) <= 8 for s in shared)
    assert any(_group_gpus(s.deployment).get("b200", 0) > 2 for s in shared if s.kind == "disaggregated")


@pytest.mark.parametrize("args, message", [
    (("--hardware", "h100-sxm,b200", "--chip-gpus", "h100-sxm:16"), "--chip-gpus 'h100-sxm:16' is not CHIP=N"),
    (("--hardware", "h100-sxm,b200", "--chip-gpus", "b200=0"), "is not CHIP=N with N an integer >= 1"),
    (("--hardware", "h100-sxm,b200", "--chip-gpus", "h200-sxm=8"), "names h200-sxm, which the plan does not use"),
    (("--hardware", "h100-sxm,b200", "--chip-gpus", "b200=4,B200=8"), "--chip-gpus gives B200 twice"),
    (("--hardware", "h100-sxm", "--chip-gpus", "h100-sxm=16"), "one chip: --gpus"),
])
def test_bad_chip_budgets_are_one_line_errors(run_cli, args, message):
    code, _, err = run_cli("plan", "--model", M, *args, "--slo-ttft-ms", "1000")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_the_header_says_each_chips_budget():
    from phasewise.plan.planner import PlanResult

    across = PlanResult(M, "h100-sxm,b200,h200-sxm", 8, Slo(1000, 50), 0.9, "goodput-per-gpu", "w", [], [], [],
                        chip_gpus=(("h100-sxm", 16), ("b200", 4)))
    assert across.budget() == "16 x h100-sxm or 4 x b200 or 8 x h200-sxm"
    together = PlanResult(M, "h100-sxm", 8, Slo(1000, 50), 0.9, "goodput-per-gpu", "w", [], [], [],
                          chip_gpus=(("h100-sxm", 8), ("b200", 2)))
    assert together.budget() == "8 x h100-sxm, 2 x b200"
    assert PlanResult(M, "h100-sxm,b200", 8, Slo(1000, 50), 0.9, "goodput-per-gpu", "w", [], [], []).budget() == \
        "8 GPUs of h100-sxm or b200"


def test_the_prescreen_weighs_capacity_in_the_objectives_units():
    """Prefill on H100s, decode on H100s or RTX A6000s ($1.09/h against $3.99/h) in one plan: a strategy with an A6000
    decode instance can do under 40 % of the best strategy's requests/s yet over 40 % of its requests per dollar.
    The pre-screen weighs each strategy's analytic capacity per GPU, per dollar, per kW ... as the objective ranks
    them, so such a strategy is simulated under goodput-per-dollar; its pruned line gives the figure it fell short on."""
    work = WorkloadSpec((512,), (64,), seed=0, name="512/64")
    opts = PlanOptions(tp_options=(1, 2), chunk_sizes=(), decode_hardware=("h100-sxm", "a6000"),
                       ratios=((1, 1), (1, 3)))
    strategies = enumerate_strategies(M, "h100-sxm", 4, opts)[0]
    caps = [capacity_estimate(s, work) for s in strategies]
    cheap = [s for s, c in zip(strategies, caps) if "a6000" in s.name and c < PRESCREEN * max(caps)
             and c / objective_per("goodput-per-dollar", s) >= PRESCREEN * max(
                 x / objective_per("goodput-per-dollar", t) for t, x in zip(strategies, caps))]
    assert cheap  # slower than 40 % of the best, cheaper per request than 40 % of the best
    pruned: list[str] = []
    kept = prescreen("goodput-per-dollar", strategies, caps, pruned)
    assert all(s in kept for s in cheap)
    per_gpu = [c / s.gpus for s, c in zip(strategies, caps)]
    gone = [s for s, score in zip(strategies, per_gpu) if score < PRESCREEN * max(per_gpu)]
    pruned = []
    kept = prescreen("goodput-per-gpu", strategies, caps, pruned)
    assert gone and not any(s in kept for s in gone) and len(kept) + len(gone) == len(strategies)
    assert all("req/s/GPU) is under 40% of the best (" in line for line in pruned) and len(pruned) == len(gone)
