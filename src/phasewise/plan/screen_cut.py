"""Which screened strategies plan() refines: the best `--top` by the screening's score, and every other strategy the
screening cannot order against the last of them, as its searches resolve a goodput only to their last bisection step
(windows.SCREEN's `steps` halvings of the bracket, bisection.highest_rate)."""

from __future__ import annotations

import math
from collections.abc import Callable

from phasewise.plan.goodput import GoodputResult


def screened_step(r: GoodputResult) -> float:
    """The search's resolution as a share of its goodput: its last bisection step, from the highest rate it held
    (goodput_rps) to the lowest it failed (binding_rps, the search's own until verification takes it), over the
    former. Three steps from a doubling bracket [x, 2x) leave x/8, 6.7-12.5 % of the answer; from a quartered one
    [x, 4x), 3x/8, up to 37.5 %. 0 where the search held no rate, or failed none (every doubling held: no bracket)."""
    if not r.goodput_rps > 0 or not math.isfinite(r.binding_rps) or r.binding_rps <= r.goodput_rps:
        return 0.0
    return (r.binding_rps - r.goodput_rps) / r.goodput_rps


def refined_at_cut(screen: list[GoodputResult], refine: int,
                   score: Callable[[GoodputResult], float]) -> list[GoodputResult]:
    """`screen`, sorted best first by `score` (the objective's value of a search's answer): its first `refine`, and
    every later one that held a rate and lies within a bisection step of the last of them (`cut`), the larger of the
    two strategies' steps (screened_step, scaled to each one's score): its score at least the cut's less the cut's
    step, or its score plus its own step (the lowest rate it failed) at least the cut's. Goodputs closer than a step
    are not ordered by the screening; those further apart are, as far as its fidelity goes (20 s windows: a 32-GPU
    DeepSeek-R1 unit screened at 3.53 req/s/GPU refines to 3.68 where one screened at 4.32 refines to 3.42; with
    the cut's step they are refined alike, not the second alone). A tie with the cut is within any step."""
    if not 0 < refine < len(screen):
        return list(screen[:refine])
    cut = screen[refine - 1]
    cut_score = score(cut)
    if not cut.goodput_rps > 0 or not math.isfinite(cut_score):
        return list(screen[:refine])
    floor = cut_score * (1.0 - screened_step(cut))

    def close(r: GoodputResult) -> bool:
        s = score(r)
        return r.goodput_rps > 0 and (s >= floor or s * (1.0 + screened_step(r)) >= cut_score)

    return screen[:refine] + [r for r in screen[refine:] if close(r)]
