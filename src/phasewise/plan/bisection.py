"""The goodput search's bisection: the highest rate that attains, bracketed from a guess by doubling or quartering,
then halved `steps` times."""

from __future__ import annotations

from collections.abc import Callable


def highest_rate(attains: Callable[[float], bool], guess: float, steps: int) -> tuple[float, float]:
    """(the highest rate found to attain, the lowest found not to; 0 for the first if none does), assuming
    attainment falls with the rate: a bracket from `guess` (doubled while it attains, at most 8 times, or
    quartered until one attains, at most 6 times), then `steps` bisections. Where every doubling attains, the
    last one tried is the answer (the second rate, twice it, was not tried)."""
    hi, lo = guess, 0.0
    for _ in range(8):  # the bracket's top must fail
        if not attains(hi):
            break
        lo, hi = hi, hi * 2
    else:
        return lo, hi
    if lo == 0.0:  # find any attaining rate by quartering
        probe = hi / 4
        for _ in range(6):
            if attains(probe):
                lo = probe
                break
            hi, probe = probe, probe / 4
    if lo > 0.0:
        for _ in range(steps):
            mid = (lo + hi) / 2
            if attains(mid):
                lo = mid
            else:
                hi = mid
    return lo, hi
