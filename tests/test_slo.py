"""SLOs as the field names them: TTFT, TPOT (a request's mean gap between output tokens) and TBT (every gap),
each its own limit, and every run saying which it applied."""

import json

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim import Slo, simulate
from phasewise.sim.api import build


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
