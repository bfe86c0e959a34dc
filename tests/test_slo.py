"""SLOs as the field names them: TTFT, TPOT (a request's mean gap between output tokens) and TBT (every gap),
each its own limit, and every run saying which it applied."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phasewise.errors import PhasewiseError
from phasewise.sim import Slo, simulate
from phasewise.sim.api import build
from phasewise.sim.deployment import build_deployment
from phasewise.sim.metrics import miss_allowance
from phasewise.workload import Workload


def _run(**kw):
    spec = build(rate=6, requests=200, isl=2048, osl=64, **kw)
    return simulate(spec.deployment, spec.workload, spec.slo)


def test_a_per_gap_limit_is_stricter_than_the_same_mean_gap_limit():
    """Chunked prefills interleave with decodes, so a request's largest gap exceeds its mean gap (TPOT): the same
    number as an every-gap (TBT) limit is met by fewer requests than as a TPOT limit."""
    result = _run()
    tpot_p50 = float(np.nanmedian(result.tpot_s)) * 1e3
    assert (result.max_tbt_s[np.isfinite(result.max_tbt_s)] >= result.tpot_s[np.isfinite(result.max_tbt_s)]).all()
    as_tpot = result.attained(Slo(tpot_ms=tpot_p50 * 1.2)).mean()
    as_tbt = result.attained(Slo(max_tbt_ms=tpot_p50 * 1.2)).mean()
    assert as_tbt < as_tpot


def test_the_summary_says_which_slos_applied():
    s = _run(slo_ttft_ms=800, slo_tpot_ms=40, slo_tbt_ms=200).summary()["slo"]
    assert s["applied"] == "TTFT <= 800 ms and TPOT <= 40 ms and every TBT <= 200 ms"
    assert {"ttft_attainment", "tpot_attainment", "tbt_attainment"} <= set(s)
    assert s["attainment"] <= min(s["ttft_attainment"], s["tpot_attainment"], s["tbt_attainment"])
    assert Slo().describe() == "no SLO" and Slo(1000, 50).describe() == "TTFT <= 1000 ms and TPOT <= 50 ms"


def test_cli_takes_tpot_and_tbt_apart(run_cli):
    code, out, _ = run_cli("simulate", "--requests", "50", "--rate", "5", "--slo-tpot-ms", "50", "--slo-tbt-ms",
                           "120", "--json")
    assert code == 0 and json.loads(out)["slo"]["applied"] == "TPOT <= 50 ms and every TBT <= 120 ms"
    code, _, err = run_cli("simulate", "--requests", "5", "--slo-tpot-ms", "0")
    assert code == 2 and "--slo-tpot-ms must be > 0" in err


def test_bad_limits_name_their_flag():
    with pytest.raises(PhasewiseError, match="--slo-tbt-ms must be > 0"):
        Slo(max_tbt_ms=-1)


@given(st.integers(1, 5000), st.floats(0.01, 1.0))
def test_the_miss_allowance_is_the_most_misses_the_target_allows(requests, target):
    misses = miss_allowance(requests, target)
    assert 0 <= misses <= requests
    assert (requests - misses) / requests >= target or misses == 0
    assert misses == requests or (requests - misses - 1) / requests < target


def test_a_run_stopped_once_its_target_is_out_of_reach_is_the_whole_runs_beginning():
    """stop_after_misses: the run ends at the event where more requests surely missed than allowed; every request
    finished by then has the whole run's times, the rest count as missing, so the attainment is at most the whole
    run's and below the target it stands for. Where the target holds, the run is not stopped and is the same."""
    spec = build(rate=40, requests=400, isl=2048, osl=64)
    slo = Slo(500, 40)
    whole = simulate(spec.deployment, spec.workload, slo)
    allowed = miss_allowance(400, 0.9)
    stopped = simulate(spec.deployment, spec.workload, slo, stop_after_misses=allowed)
    assert np.isfinite(stopped.stopped_s) and np.isnan(whole.stopped_s)
    done = np.isfinite(stopped.finish_s)
    assert 0 < done.sum() < 400 and (stopped.finish_s[done] <= stopped.stopped_s).all()
    for name in ("first_token_s", "finish_s", "tpot_s", "max_tbt_s"):
        assert np.array_equal(getattr(stopped, name)[done], getattr(whole, name)[done], equal_nan=True)
    assert (~stopped.attained()[done]).sum() > allowed
    summary = stopped.summary()
    assert summary["slo"]["attainment"] <= whole.summary()["slo"]["attainment"] < 0.9
    assert summary["sim"]["stopped_s"] == stopped.stopped_s
    easy = Slo(60_000, 1_000)
    kept = simulate(spec.deployment, spec.workload, easy, stop_after_misses=allowed)
    assert np.isnan(kept.stopped_s)
    assert np.array_equal(kept.finish_s, simulate(spec.deployment, spec.workload, easy).finish_s)


def test_a_closed_loop_cannot_be_stopped_on_misses():
    from phasewise.workload import ClosedLoop, LengthDist

    spec = build(rate=4, requests=20)
    clients = ClosedLoop(2, 8, LengthDist("fixed", 128), LengthDist("fixed", 16))
    with pytest.raises(PhasewiseError, match="open loop"):
        simulate(spec.deployment, clients, Slo(500, 40), stop_after_misses=1)


def test_a_rejected_one_token_request_attains_no_slo_part():
    """The per-part attainments count a request that never finished as missing every part, one-token answers
    (no TPOT or TBT of their own) included, as the overall attainment does."""
    dep = build_deployment(dict(instances=[dict(hardware="h100-sxm", memory_fraction=0.3)]))
    slo = simulate(dep, Workload([0.0, 0.1, 0.2], [100, 60000, 100], [200, 1, 10])).summary()["slo"]
    assert slo["attainment"] == slo["ttft_attainment"] == slo["tpot_attainment"] == slo["tbt_attainment"] == 2 / 3
