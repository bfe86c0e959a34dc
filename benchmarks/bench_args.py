"""Not a benchmark: the argument checks the benchmarks/ scripts share, so that a bad value to a script's own flag
ends as `phasewise`'s flags do, in one line naming the flag and what it takes (argparse's usage error, exit 2),
never a traceback, a silent default or a value quietly read as another (a --repeat of 0 is not "no runs, then a
crash"). A script imports it as its sibling (`sys.path` gets this folder however the script was loaded).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

from phasewise.errors import PhasewiseError


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum` (a count: requests, repeats, GPUs, seconds)."""
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= {minimum}")
        return value

    return whole_number


def positive(text: str) -> float:
    """An argparse type: a finite number > 0 (a rate, a time limit)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number > 0")
    return value


def positives(text: str) -> list[float]:
    """An argparse type: a comma-separated list of finite numbers > 0 (rates), at least one."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated finite numbers > 0")
    try:
        return [positive(t) for t in items]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated finite numbers > 0 ({exc})") from None


def counts(text: str) -> list[int]:
    """An argparse type: a comma-separated list of whole numbers >= 1, at least one."""
    try:
        return [at_least(1)(t.strip()) for t in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated whole numbers >= 1") from None


def names(allowed: Iterable[str], everything: str | None = "all") -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of `allowed` names (in the order given), or `everything` for all of
    them; an empty list or a name not allowed is refused with the names it takes."""
    allowed = list(allowed)

    def listed(text: str) -> list[str]:
        if everything is not None and text.strip() == everything:
            return allowed
        wanted = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in wanted if t not in allowed]
        if unknown or not wanted:
            takes = ", ".join(allowed) + (f" (or {everything})" if everything else "")
            raise argparse.ArgumentTypeError(f"{', '.join(unknown) or repr(text)}: not one of {takes}")
        return wanted

    return listed


def known(ap: argparse.ArgumentParser, flag: str, values: Iterable[str], load: Callable[[str], Any]) -> None:
    """Each of `values` looked up by `load` (load_model, load_hardware, get_scenario, ...) before anything runs; one
    it refuses ends the run as argparse's one-line error naming `flag` and, from the refusal, the names it takes."""
    for value in values:
        try:
            load(value)
        except PhasewiseError as exc:
            ap.error(str(exc) if str(exc).startswith(flag) else f"{flag}: {exc}")


def refusing(main: Callable[[], int | None]) -> int:
    """main()'s exit status, where a PhasewiseError it raises (a value the library refuses once the run is built: a
    TP the model's heads do not divide, a trace it cannot read) ends the run as `phasewise` ends one: its one line
    `error: ...` on stderr, exit status 2."""
    try:
        return main() or 0
    except PhasewiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
