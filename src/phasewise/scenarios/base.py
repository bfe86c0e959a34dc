"""What a scenario is: a paper's comparison rerun on public capabilities, its setup declared as data.

A scenario module defines `SCENARIO = Scenario(...)`: the paper, the one-line claim, the setup (every
parameter with its default and where that default comes from) and `run(setup) -> Outcome`, which uses
only public APIs (sim.api, plan, perf, specs) and returns checks (phasewise's figure against the
paper's, within a band) and plotly figures for the HTML report. Contract: ../shared/SCENARIOS.md.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from phasewise.errors import PhasewiseError, pydantic_message
from phasewise.perf.estimate import estimate
from phasewise.specs import load_model


@dataclass(frozen=True, slots=True)
class Param:
    """One setup parameter: its default, where the default comes from (the paper, PAPERS.md, a datasheet,
    or "assumed: <why>"), and, for a choice among names, the allowed values."""

    value: Any
    source: str
    choices: tuple[str, ...] | None = None
    help: str = ""
    length: int | None = None  # a list of exactly this many values (a band's low and high, a pair of sizes)
    upper: float | None = None  # the largest value allowed (a fraction's 1; a bound on what a run can simulate)
    lower: float | None = None  # the smallest value allowed, where it is not the default's sign (a -1 "auto", a 2)
    items: tuple[int, int] | None = None  # a list of at least / at most this many values (a grid a run sweeps)
    element: Any = None  # an optional list's value type, by example (its default, empty, is "not given")
    # a list whose values each come once (a grid a run sweeps, models to compare); None: a list without a fixed
    # `length` whose default holds each value once (not a band, a measured series, or probabilities such as 1/3, 1/3)
    distinct: bool | None = None

    def each_once(self) -> bool:
        """Whether `--set` refuses a value twice in this list (`distinct`)."""
        if self.distinct is not None:
            return self.distinct
        default = self.value
        return self.length is None and bool(default) and len(set(default)) == len(default)

    def proto(self) -> Any:
        """A value of the type `--set` parses: the default, or its first element, or `element` for an empty list."""
        default = self.value
        if not isinstance(default, (list, tuple)):
            return default
        return default[0] if default else (self.element if self.element is not None else "")

    def allowed(self) -> str:
        """The values `--set` takes, in words (the listing's and --help-setup's column)."""
        default = self.value
        proto = self.proto()
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        elif isinstance(proto, bool):
            text = "true / false"
        elif isinstance(proto, (int, float)):
            kind = "integer" if isinstance(proto, int) else "number"
            low = (f">= {self.lower:g}" if self.lower is not None else
                   "> 0" if proto > 0 else ">= 0" if proto == 0 else "")
            high = f"<= {self.upper:g}" if self.upper is not None else ""
            text = " ".join(x for x in (kind, low, high) if x)
        else:
            text = "a name (the catalog's or a file)"
        if isinstance(default, (list, tuple)):
            count = (f"{self.length}" if self.length is not None else
                     f"{self.items[0]}-{self.items[1]}" if self.items is not None else "1 or more")
            text = f"{count} comma-separated values, each {text}" + (", each once" if self.each_once() else "")
            if not default:
                text += " (default: not given)"
        return text


@dataclass(slots=True)
class Check:
    """phasewise's figure against the paper's: passes when it lies inside `band` (inclusive)."""

    name: str
    claim: str
    paper: float | list[float] | None
    phasewise: float
    band: tuple[float, float]
    why: str

    @property
    def passed(self) -> bool:
        lo, hi = self.band
        x = self.phasewise
        return isinstance(x, (int, float)) and math.isfinite(x) and lo <= x <= hi

    def to_json(self) -> dict[str, Any]:
        paper = list(self.paper) if isinstance(self.paper, (list, tuple)) else self.paper
        return {"name": self.name, "claim": self.claim, "paper": paper, "phasewise": float(self.phasewise),
                "band": [float(self.band[0]), float(self.band[1])], "pass": self.passed, "why": self.why}


@dataclass(slots=True)
class Outcome:
    """What a scenario's run produced: its checks, its figures (plotly Figure objects or dicts with `data`
    and `layout`) and tables for the report ({"title": str, "columns": [...], "rows": [[...]]})."""

    checks: list[Check]
    figures: list[Any] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    setup: dict[str, Any]
    outcome: Outcome
    wall_s: float

    @property
    def passed(self) -> bool:
        return bool(self.outcome.checks) and all(c.passed for c in self.outcome.checks)

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario.name, "paper": self.scenario.paper, "setup": self.setup,
                "checks": [c.to_json() for c in self.outcome.checks], "pass": self.passed}


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str  # what `phasewise reproduce NAME` takes
    number: int  # the paper's number in PAPERS.md (listing order)
    paper: str  # the paper's title
    claim: str  # the comparison rerun, in one line
    setup: dict[str, Param]
    run_fn: Callable[[dict[str, Any]], Outcome]
    # the values of one setup that hold only together (a size within the context, a count within another), checked
    # before anything runs: raises a one-line PhasewiseError naming the --set keys (setup_error)
    validate: Callable[[dict[str, Any]], None] | None = None
    # the paper's figures and the checks' bands, fixed in the scenario's module before the first run (SCENARIOS.md: no
    # figure is typed in to make a check pass), and former keys that set nothing: not setup, so `--set` refuses each
    # by name with what it is (FIXED_FIGURE's words for a figure)
    fixed: dict[str, str] = field(default_factory=dict)
    # groups of setup keys of which `--set` takes one (one replaces another: both given, whatever their values, is an
    # error naming them, never one silently ignored)
    exclusive: tuple[tuple[str, ...], ...] = ()

    def resolve(self, overrides: dict[str, str] | None = None) -> dict[str, Any]:
        """The setup's values with `--set key=value` overrides parsed to each default's type, then checked together
        (`exclusive`, `validate`)."""
        values = {k: p.value for k, p in self.setup.items()}
        for keys in self.exclusive:
            if sum(key in (overrides or {}) for key in keys) > 1:
                raise setup_error(self.name, ", ".join(keys), "give one: "
                                  f"{keys[-1]} replaces {', '.join(keys[:-1])}")
        for key, text in (overrides or {}).items():
            if key in self.fixed:
                raise PhasewiseError(f"reproduce {self.name}: --set {key}: not a setup key: {self.fixed[key]}")
            if key not in self.setup:
                raise PhasewiseError(f"reproduce {self.name}: unknown --set key '{key}' "
                                     f"(known: {', '.join(self.setup)})")
            try:
                values[key] = parse_value(self.name, key, text, self.setup[key])
            except PhasewiseError as exc:
                raise PhasewiseError(f"{exc}; known keys: {', '.join(self.setup)}") from None
        if self.validate is not None:
            with self.naming_keys(values):
                self.validate(dict(values))
        return values

    def run(self, overrides: dict[str, str] | None = None) -> ScenarioResult:
        setup = self.resolve(overrides)
        wall0 = time.perf_counter()
        try:
            with self.naming_keys(setup):
                outcome = self.run_fn(dict(setup))
        except ValidationError as exc:  # an override a deployment's or policy's schema refuses (e.g. acceptance 1)
            raise pydantic_message(f"reproduce {self.name}", exc) from None
        return ScenarioResult(self, setup, outcome, time.perf_counter() - wall0)

    @contextmanager
    def naming_keys(self, values: dict[str, Any]) -> Iterator[None]:
        """A capability's one-line error raised while the setup is checked or run (a catalog's 'unknown hardware
        'foo'', a chip without the precision's compute path) reworded to name the --set keys: the keys whose value
        it quotes, and each flag it names that is a setup key (--precision -> --set precision). Errors already
        naming this scenario pass unchanged."""
        try:
            yield
        except PhasewiseError as exc:
            text = str(exc)
            if text.startswith(f"reproduce {self.name}"):
                raise
            for key in sorted(self.setup, key=len, reverse=True):
                text = re.sub(rf"--{key.replace('_', '[-_]')}\b", f"--set {key}", text)
            quoted = [key for key, value in values.items()
                      if any(f"'{item}'" in text for item in (value if isinstance(value, list) else [value])
                             if isinstance(item, str))]
            named = f"--set {', '.join(quoted)}: " if quoted else ""
            raise PhasewiseError(f"reproduce {self.name}: {named}{text}") from None


def parse_value(scenario: str, key: str, text: str, param: Param) -> Any:
    """`text` as the type of `param`'s default: bool, int, float, str (one of `choices` if given), or a
    comma-separated list of the first element's type. From Python (resolve / run's overrides), a value may be given
    as itself (1024, 0.5, True, [1, 2]): read as its text, through the same checks; another kind of value is a
    one-line error naming the key."""
    default = param.value
    if not isinstance(text, str):
        items = text if isinstance(text, (list, tuple)) else [text]
        if not items or not all(isinstance(v, (bool, int, float, str)) for v in items):
            raise PhasewiseError(f"reproduce {scenario}: --set {key}={text!r} is not text or a value of the key's own "
                                 f"type ({type(default).__name__}, e.g. {default!r})")
        text = ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in items)

    def bad(kind: str) -> PhasewiseError:
        allowed = f" (allowed: {', '.join(param.choices)})" if param.choices else ""
        return PhasewiseError(f"reproduce {scenario}: --set {key}={text!r} is not {kind}{allowed}")

    def one(proto: Any, raw: str) -> Any:
        raw = raw.strip()
        if isinstance(proto, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise bad("a boolean (true/false)")
        if isinstance(proto, (int, float)):
            try:
                value = int(raw) if isinstance(proto, int) else float(raw)
            except ValueError:
                raise bad("an integer" if isinstance(proto, int) else "a number") from None
            if not math.isfinite(value):
                raise bad("a finite number")
            # a quantity declared positive (rates, lengths, counts, SLOs) stays positive; one declared 0 (a seed,
            # an "auto" 0) stays >= 0
            # an explicit `lower` replaces the default's sign (a share that may be 0, a -1 "auto")
            if param.lower is None and proto > 0 and not value > 0:
                raise bad("a number > 0")
            if param.lower is None and proto == 0 and value < 0:
                raise bad("a number >= 0")
            if param.lower is not None and value < param.lower:
                raise bad(f"a number >= {param.lower:g}")
            if param.upper is not None and value > param.upper:
                raise bad(f"a number <= {param.upper:g}")
            return value
        if param.choices and raw not in param.choices:
            raise bad("an allowed value")
        if not raw:
            raise bad("a non-empty value")
        return raw

    if isinstance(default, (list, tuple)):
        proto = param.proto()
        parts = text.split(",")
        if not all(part.strip() for part in parts):  # as in a list of names (errors.py name_list)
            raise PhasewiseError(f"reproduce {scenario}: --set {key}={text!r}: an empty value in the list (give "
                                 "values separated by commas)")
        items = [one(proto, part) for part in parts]
        twice = next((item for item in items if items.count(item) > 1), None) if param.each_once() else None
        if twice is not None:
            raise PhasewiseError(f"reproduce {scenario}: --set {key}={text!r} names {twice} twice")
        if param.length is not None and len(items) != param.length:
            raise bad(f"a comma-separated list of {param.length} values")
        if param.items is not None and not param.items[0] <= len(items) <= param.items[1]:
            raise bad(f"a comma-separated list of {param.items[0]} to {param.items[1]} values")
        return items
    return one(default, text)


def lengths_within_context(scenario: str, model: str, prompt_tokens: float, output_tokens: float = 0.0,
                           keys: str = "prompt_tokens + output_tokens", beyond: int = 0) -> None:
    """A one-line error naming the --set `keys` when a scenario's prompt + output lengths exceed the model's context
    (no request of such a workload would run: its figures would be divisions by zero, or a simulation without end).
    `beyond`: a longer length the paper's own setup runs the model to (stated in the Param's source), allowed too."""
    context = load_model(model).max_position_embeddings
    total = prompt_tokens + output_tokens
    if context and total > max(context, beyond):
        also = f" (or the {beyond:,} of the paper's setup, its Param's source)" if beyond > context else ""
        raise PhasewiseError(f"reproduce {scenario}: {keys} = {total:g} exceed the {context:,}-token context of "
                             f"{model}{also}")


def memory_refusal(model: str, hardware: str, **sizes: Any) -> str | None:
    """Why `model` does not fit on one `hardware` at `sizes` (estimate's keywords: tp, precision, engine, batch,
    prompt_len, ...) as `phasewise estimate` sizes it (MemoryFit.reason), or None where it fits: the one memory check
    the scenarios' setups run before anything else."""
    fit = estimate(model, hardware, **sizes).memory
    return None if fit.fits else fit.reason()


def autoregressive(scenario: str, key: str, models: str | list[str]) -> None:
    """A one-line error naming the --set `key` for a diffusion LM where the scenario decodes token by token (its
    drafts, heads, decode steps and serving simulations are an autoregressive model's): such a model runs in
    `reproduce odb-dllm` and `simulate --dllm`."""
    for model in [models] if isinstance(models, str) else models:
        if not load_model(model).causal:
            raise setup_error(scenario, key, f"needs an autoregressive model; {model} is a diffusion LM "
                                             "(bidirectional, decoded block by block: `reproduce odb-dllm` and "
                                             "`simulate --dllm` serve it)")


FIXED_FIGURE = "the paper's {what}, fixed before the first run (no figure is typed in to make a check pass)"


def setup_error(scenario: str, keys: str, message: str) -> PhasewiseError:
    """A one-line error for setup values each valid alone but not together: the --set keys, then what is allowed."""
    return PhasewiseError(f"reproduce {scenario}: --set {keys}: {message}")


def check_with(scenario: str, names: dict[str, str], check: Callable[[], Any]) -> Any:
    """Run a capability's own check up front (a loader, a decoding's or a deployment's constructor: its rule stays
    in one place) and re-word its one-line error to name the --set keys: each of `names` (a flag or field as the
    capability names it -> the words that name the setup key) is replaced in the message."""
    try:
        return check()
    except (PhasewiseError, ValidationError) as exc:
        text = str(pydantic_message("", exc)).removeprefix(": ") if isinstance(exc, ValidationError) else str(exc)
        for name, key in names.items():
            text = text.replace(name, key)
        raise PhasewiseError(f"reproduce {scenario}: {text}") from None


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """`--set key=value` flags as a dict (a key given twice: the last wins is surprising, so an error)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PhasewiseError(f"--set takes key=value (got {item!r})")
        if key in out:
            raise PhasewiseError(f"--set {key} given twice")
        out[key] = value
    return out
