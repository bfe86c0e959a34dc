"""benchmarks/validate_amd.py: the AMD entries against ROCm/vllm's published MI300X static-batch latencies and
InferenceX's DeepSeek-R1 serving runs on MI300X, MI325X and MI355X, every run held out. Loose bounds that catch a
broken entry, not a claim of accuracy (the figures are in the README and the chips' caveats, which a test here keeps
equal to the check's)."""

from __future__ import annotations

import math

from conftest import load_benchmark


def load():
    return load_benchmark("validate_amd")


def test_every_published_run_is_costed_within_a_loose_bound(capsys):
    module = load()
    points = module.load_points()
    assert len(points) == 11 and {p["hardware"] for p in points} == {"mi300x"}
    rows = module.evaluate(points)
    for r in rows:
        for column in module.COLUMNS:
            assert math.isfinite(r["predicted_s"][column])
            assert 0.4 < r["predicted_s"][column] / r["measured_s"] < 1.5, (r["id"], column)
    # a bigger batch of the same lengths takes longer, measured and predicted
    by_id = {r["id"]: r for r in rows}
    for small, big in (("R1", "R5"), ("R6", "R8"), ("R9", "R11")):
        assert by_id[big]["measured_s"] > by_id[small]["measured_s"]
        assert by_id[big]["predicted_s"]["catalog"] > by_id[small]["predicted_s"]["catalog"]
    assert module.main(["--static-only"]) == 0 and "11 runs held out" in capsys.readouterr().out


def test_the_mi300x_caveat_states_the_measured_error():
    """The catalog's caveat that plan, simulate and estimate print beside an MI300X answer quotes this check's figures
    (median and the batch 1 and 128 ends): a change to the cost model that moves them must move the caveat too."""
    from phasewise.specs import load_hardware

    module = load()
    rows = module.evaluate(module.load_points())
    def span(batch: int) -> str:  # the under-prediction's range over the runs of one batch size, as the caveat puts it
        errors = sorted(round(-100 * r["error"]["catalog"]) for r in rows if r["batch"] == batch)
        return f"{errors[0]}-{errors[-1]} %"

    median = module.summary(rows)["catalog"]["median_abs"]
    caveat = load_hardware("mi300x").caveat
    assert f"median {round(100 * median)} %" in caveat
    assert f"{span(1)} at batch 1 to {span(128)} at batch 128" in caveat
    assert all(error < 0 for error in (r["error"]["catalog"] for r in rows))  # "under-predicted", every run


def test_the_serving_runs_are_costed_and_the_caveats_quote_them(capsys):
    """InferenceX's collocated SGLang DeepSeek-R1 runs: each costed (finite, within 0.1-1.5x of the measured mean TTFT
    and TPOT), every one predicted fast ("predictions run fast against every published run checked"), and each AMD
    chip's caveat quoting its median under-prediction of both."""
    import statistics

    from phasewise.specs import load_hardware

    module = load()
    runs, skipped = module.load_runs()
    assert len(runs) == 77 and {r["gpu"] for r in runs} == {"mi300x", "mi325x", "mi355x"}
    assert {why.split(" (")[0] for _, why in skipped} >= {"disaggregated", "engine 'atom' is not one phasewise models"}
    cases = [module.serving_case(r) for r in runs]
    results = module.evaluate_serving(cases)
    for c, r in zip(cases, results):
        for metric in ("ttft", "tpot"):
            assert math.isfinite(r[metric]) and 0.1 < r[metric] / c[f"measured_{metric}_ms"] < 1.5, (c["id"], metric)
            assert r[f"err_{metric}"] < 0, (c["id"], metric)
    for gpu in ("mi300x", "mi325x", "mi355x"):
        mine = [r for c, r in zip(cases, results) if c["id"].startswith(gpu)]
        ttft, tpot = (round(-100 * statistics.median(r[f"err_{m}"] for r in mine)) for m in ("ttft", "tpot"))
        caveat = load_hardware(gpu).caveat
        assert f"InferenceX, {len(mine)} runs" in caveat and f"mean TTFT {ttft} % and TPOT {tpot} % under" in caveat
    assert module.main(["--serving-only"]) == 0 and "77 InferenceX runs costed" in capsys.readouterr().out
