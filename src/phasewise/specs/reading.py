"""The one reading layer for files a user gives: every failure (missing, a directory, unreadable, too large to be
a sane input, binary data, not UTF-8, syntax, nesting too deep) becomes a one-line PhasewiseError naming the
file, and the reader that parses the text names the row or field.

Every reader of a user file goes through here: YAML/JSON configs (read_user_file: deployment, hardware, engine,
model config.json, sweep, points, topology, device-cloud, mappings), traces (read_text: CSV, JSONL, Mooncake) and
files a library opens itself (check_file: a tokenizer.json)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from phasewise.errors import PhasewiseError

# the file a checkpoint directory holds its architecture in, the one file an engine reads the model's shape from
CHECKPOINT_CONFIG = "config.json"

# Largest sane inputs. Configs: assumed, 16 MiB is ~1000x the largest shipped catalog (models.yaml, ~60 KB) and
# any HF config.json (a few KB). Traces: assumed, 1 GiB is ~10 M CSV rows (~25 M requests of the Azure 2024
# week-long traces need ~1 GB); parsed rows cost ~10x their text in memory, so larger files would not fit the
# memory of a laptop. Tokenizers: assumed, 256 MiB is ~8x the largest public tokenizer.json (Gemma 3, ~33 MB).
CONFIG_MAX_BYTES = 16 << 20
TRACE_MAX_BYTES = 1 << 30
TOKENIZER_MAX_BYTES = 256 << 20
# Largest token count a file may give one request: assumed, 2^31 - 1 is ~2000x the longest context of any model
# (1 M tokens) so every request that could run is read, and sums over millions of requests stay exact in int64.
MAX_TOKENS = 2**31 - 1
# Values in one config file, aliases expanded: assumed, 1 M is ~1000x the largest shipped catalog (models.yaml,
# ~800 values) and still walks in well under a second.
MAX_CONFIG_VALUES = 1_000_000


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"


def check_file(path: str | Path, what: str, max_bytes: int) -> Path:
    """The path of an existing regular file no larger than max_bytes (a one-line error otherwise)."""
    p = Path(path)
    try:
        if not p.exists():
            raise PhasewiseError(f"{what} file '{path}' does not exist")
        if not p.is_file():
            raise PhasewiseError(f"{what} file '{path}' is not a regular file")
        size = p.stat().st_size
    except OSError as exc:
        raise PhasewiseError(f"{what} file '{path}' cannot be read ({exc.strerror or type(exc).__name__})") from None
    if size > max_bytes:
        raise PhasewiseError(f"{what} file '{path}' is {_size(size)}, larger than the {_size(max_bytes)} a "
                             f"{what} file may be")
    return p


def read_text(path: str | Path, what: str, max_bytes: int = CONFIG_MAX_BYTES) -> str:
    """A user file's text (UTF-8, a leading byte-order mark dropped); binary or non-UTF-8 data is a one-line
    error naming the file and the byte offset."""
    p = check_file(path, what, max_bytes)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PhasewiseError(f"{what} file '{path}' cannot be read ({exc.strerror or type(exc).__name__})") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise PhasewiseError(f"{what} file '{path}' holds binary data (a NUL byte at offset {nul}), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PhasewiseError(f"{what} file '{path}' is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                             f"{exc.start})") from None


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int | None, first_line: int | None = None) -> None:
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


class _UserYamlLoader(yaml.SafeLoader):
    """YAML for users' files: PyYAML's safe loader (YAML 1.1) but (a) a number with an exponent and no dot or no
    signed exponent (1e3, 450e9, 1.5e9) is the float YAML 1.2 and JSON read, where YAML 1.1 reads the string '1e3'
    (which one field would then scale, another refuse and a third misread), and (b) a key repeated in one mapping is
    an error rather than the last one silently winning."""

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges keys that the mapping's own may override
            line = key_node.start_mark.line + 1
            if (key_node.tag, key_node.value) in first:
                raise _DuplicateKey(key_node.value, line, first[(key_node.tag, key_node.value)])
            first[(key_node.tag, key_node.value)] = line
        return node


_UserYamlLoader.yaml_implicit_resolvers = {  # a copy: SafeLoader's own (the catalogs') stay YAML 1.1
    char: list(resolvers) for char, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_UserYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


class _JsonDecoder(json.JSONDecoder):
    """json's decoder with a repeated key in one object an error (json.loads keeps the last silently); the pure-Python
    scanner, whose objects pass through parse_object with their offset (configs are small)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parse_object = self._object
        self.scan_once = json.scanner.py_make_scanner(self)

    def _object(self, s_and_end: tuple[str, int], strict: bool, scan_once: Any, object_hook: Any,
                object_pairs_hook: Any, memo: Any = None) -> tuple[dict[str, Any], int]:
        text, start = s_and_end
        pairs, end = json.decoder.JSONObject(s_and_end, strict, scan_once, None, list, memo)
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:  # the line of the object's opening brace: JSONObject gives no key's offset
                raise _DuplicateKey(key, None, text.count("\n", 0, start) + 1)
            obj[key] = value
        return obj, end


def number(value: Any, field: str, where: str, unit: str = "") -> float:
    """A numeric field a reader takes by hand (not through a pydantic model): an int or a float, or text that spells
    a finite one (as pydantic's float fields take it); true / false or anything else is a one-line error."""
    wanted = f"a number{' of ' + unit if unit else ''}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PhasewiseError(f"{where}: {field} must be {wanted} (got {value!r})")
    try:
        out = float(value)
    except ValueError:
        raise PhasewiseError(f"{where}: {field} must be {wanted} (got {value!r})") from None
    if not math.isfinite(out):
        raise PhasewiseError(f"{where}: {field} must be {wanted} (got {value!r}: a number must be finite)")
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _NotJson(Exception):
    pass


def _not_json(token: str) -> Any:
    raise _NotJson(token)  # NaN, Infinity, -Infinity: Python's json reads them, JSON has no such numbers


def parse_text(text: str, path: str | Path, what: str, non_finite: bool = False) -> Any:
    """JSON (a .json file) or YAML text, a syntax error or too deep a nesting being one line naming the file. JSON has
    no NaN or Infinity; Python's json module writes them (allow_nan), so files that transformers saves can hold them:
    `non_finite` reads them as the floats they spell (check_tree then says in which fields they may stand)."""
    try:
        if Path(path).suffix != ".json":
            return yaml.load(text, Loader=_UserYamlLoader)
        return json.loads(text, cls=_JsonDecoder, parse_constant=float if non_finite else _not_json)
    except _DuplicateKey as exc:
        at = (f"line {exc.line}: key '{exc.key}' appears twice in one mapping (first at line {exc.first_line})"
              if exc.line is not None else
              f"key '{exc.key}' appears twice in the object opened at line {exc.first_line}")
        raise PhasewiseError(f"{what} file '{path}' is malformed: {at}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PhasewiseError(f"{what} file '{path}' is malformed: {_first_line(exc)}") from None
    except _NotJson as exc:
        raise PhasewiseError(f"{what} file '{path}' is malformed: {exc} is not JSON (a number must be finite)") \
            from None
    except RecursionError:
        raise PhasewiseError(f"{what} file '{path}' is nested too deeply to be a {what} file") from None


def jsonl_objects(text: str, path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSON-lines file; a line that is not a JSON object is a
    one-line error naming the file and line."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"trace '{path}' line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PhasewiseError(f"{where}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise PhasewiseError(f"{where}: nested too deeply to be a request") from None
        if not isinstance(obj, dict):
            raise PhasewiseError(f"{where}: not a JSON object")
        yield number, obj


def check_tree(data: Any, path: str | Path, what: str, non_finite_fields: tuple[str, ...] | None = None) -> None:
    """Every key text, no YAML alias referring to itself, and at most MAX_CONFIG_VALUES values once aliases are
    expanded (a YAML 'billion laughs' would otherwise stall whatever walks it next); with `non_finite_fields`, NaN or
    +-Infinity only in those fields (a number inside a list belongs to the field holding the list), else a one-line
    error naming the field."""
    stack: list[tuple[Any, str, tuple[int, ...], str]] = [(data, "", (), "")]
    seen = 0
    while stack:
        node, where, ancestors, field = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            raise PhasewiseError(f"{what} file '{path}' expands to more than {MAX_CONFIG_VALUES:,} values "
                                 "(YAML aliases repeated?)")
        if non_finite_fields is not None and isinstance(node, float) and not math.isfinite(node) \
                and field not in non_finite_fields:
            token = "NaN" if math.isnan(node) else "Infinity" if node > 0 else "-Infinity"
            raise PhasewiseError(f"{what} file '{path}' is malformed: field {where} holds {token} (a number must be "
                                 "finite)")
        if not isinstance(node, (dict, list)):
            continue
        if id(node) in ancestors:
            raise PhasewiseError(f"{what} file '{path}': {where or 'the top level'} contains itself (a YAML alias "
                                 "loop)")
        inside = (*ancestors, id(node))
        for key, value in (node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(node, dict) and not isinstance(key, str):
                raise PhasewiseError(f"{what} file '{path}': key {key!r}{' in ' + where if where else ''} must be "
                                     "text (quote it)")
            stack.append((value, f"{where}.{key}" if isinstance(node, dict) and where else
                          str(key) if isinstance(node, dict) else f"{where}[{key}]", inside,
                          key if isinstance(node, dict) else field))


def read_user_file(path: str | Path, what: str, non_finite_fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Parse a user-supplied YAML or JSON file holding a mapping, turning every failure into a one-line error;
    `non_finite_fields`: the fields that may hold NaN or Infinity (check_tree; None: none, in YAML or JSON)."""
    data = parse_text(read_text(path, what), path, what, non_finite=non_finite_fields is not None)
    if not isinstance(data, dict):
        raise PhasewiseError(f"{what} file '{path}' must hold a mapping at the top level")
    check_tree(data, path, what, non_finite_fields or ())  # YAML's .inf / .nan as JSON's NaN / Infinity
    return data


def spec_file_stamps(*names: str | None) -> tuple:
    """What a cache keyed on spec names (a model, chip, engine or mapping) keys on beside them, so that it sees a
    user's file edited between two calls in one process: each name that is a file by its (mtime_ns, size), a
    checkpoint directory by its config.json's (specs/model_catalog.py reads that), a catalog name (no such file) by
    None. One stat a name (~1 us), cheap beside what the caches keep."""
    stamps = []
    for name in names:
        stamp = None
        if name:
            try:
                path = Path(name)
                stat = (path / CHECKPOINT_CONFIG if path.is_dir() else path).stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
            except (OSError, ValueError):  # no such file (a catalog name), or a name no path can be
                pass
        stamps.append(stamp)
    return tuple(stamps)
