"""What a simulated run's summary tells a goodput search and the plan's table: the output tokens per GPU a goodput
carries, whether the run was stopped early, its point on the search's curve, and what binds in a run that failed."""

from __future__ import annotations

import math
from typing import Any


def goodput_tokens_per_s_per_gpu(rate_rps: float, s: dict[str, Any], gpus: int) -> float:
    """The output tokens per second per GPU a goodput of `rate_rps` requests/s carries: the rate times the output
    tokens per measured request of the run summarised in `s` (the verification run at that rate), over `gpus`
    GPUs; not that run's tokens over its duration, which runs on past the last arrival until every request has
    drained (by a third with 1,024-token answers: 732 for a row whose goodput carries 1,123). NaN without a run."""
    requests, throughput = s.get("requests", 0), s.get("throughput", {})
    if not requests or gpus <= 0 or not s.get("duration_s"):
        return math.nan
    tokens_per_request = throughput.get("output_tokens_per_s", math.nan) * s["duration_s"] / requests
    return rate_rps * tokens_per_request / gpus


def stopped_early(s: dict[str, Any]) -> bool:
    """Whether the run a summary comes from was stopped once its target was out of reach (simulate's
    stop_after_misses): its figures then cover only the requests finished by then."""
    stopped = s["sim"]["stopped_s"]
    return bool(stopped == stopped)


def curve_point(s: dict[str, Any], rate: float, scale: float, gpus: int) -> dict[str, Any]:
    """The curve's point at `rate` (the whole deployment's, on its `gpus` GPUs) from a run of 1/`scale` of it;
    `stopped` where the run was stopped once the target was out of reach (its attainment then a lower bound, its
    rates partial), `stable` whether its queue stayed bounded (stable()); tokens/s per GPU the rate's output tokens,
    as the ranked table's (goodput_tokens_per_s_per_gpu)."""
    tpot = s["tpot_ms"]["mean"]
    return {
        "rate_rps": rate,
        "attainment": s["slo"]["attainment"],
        "stable": bool(s.get("stable", True)),
        "stopped": stopped_early(s),
        "ttft_attainment": s["slo"]["ttft_attainment"],
        "tpot_attainment": s["slo"]["tpot_attainment"],
        "tbt_attainment": s["slo"]["tbt_attainment"],
        "ttft_p90_ms": s["ttft_ms"]["p90"],
        "tpot_p90_ms": s["tpot_ms"]["p90"],
        "tbt_p99_ms": s["tbt_ms"]["p99"],
        "tokens_per_s_per_gpu": goodput_tokens_per_s_per_gpu(rate, s, gpus),
        "tokens_per_s_per_user": 1e3 / tpot if tpot and tpot == tpot else math.nan,
        "power_w": s["energy_j"] / s["duration_s"] * scale if s["duration_s"] > 0 else math.nan,  # every GPU's
    }


def binds(s: dict[str, Any], target: float) -> str:
    """What fails in the run `s` summarises (a rate above the goodput): the SLO fewest requests meet, or the
    backlog where every SLO's attainment holds but the queue grows (s["stable"]). A stopped run: the SLO the
    requests finished by then missed most."""
    t, d, g = (s["slo"][k] for k in ("ttft_attainment", "tpot_attainment", "tbt_attainment"))
    if min(t, d, g) >= target and not s.get("stable", True):
        return "capacity (backlog grows)"
    return min((t, "prefill (TTFT)"), (d, "decode (TPOT)"), (g, "decode (every TBT)"))[1]
