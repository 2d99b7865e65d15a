"""Make a tool call's arguments fit the tool's JSON schema, or say why they cannot.

Small models get types and ranges wrong more often than they get names wrong: `"5"` for
5, `10**15` for a result count, `"True"`, a single string where a list is expected. Each
fix is recorded as a note (`".k: 1000 clamped to 50"`) so the step trace can show it.

Covers the schemas LangChain derives from typed Python functions and pydantic models:
`type` (or a list of types), `anyOf`/`oneOf`, `enum`, `minimum`/`maximum` (and the
exclusive forms), `minLength`/`maxLength`, `minItems`/`maxItems`, `items`, `properties`,
`required`. Not covered: `$ref`, `allOf`, `pattern`, `format`, `dependencies`.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any


class ArgumentError(ValueError):
    """An argument that is missing or cannot be coerced to its schema."""


def coerce(value: Any, schema: dict[str, Any], path: str, notes: list[str]) -> Any:
    """`value` made to fit `schema`; `path` (".k", ".boxes[0]") names it in notes and errors.

    >>> notes = []
    >>> coerce({"k": "7", "x": 1}, {"type": "object", "properties": {"k": {"type": "integer",
    ...        "maximum": 5}}}, "", notes), notes
    ({'k': 5}, [".k: '7' clamped to 5", '.x: unknown argument dropped'])
    """
    branches = schema.get("anyOf") or schema.get("oneOf")
    types = schema.get("type")
    if isinstance(types, list):
        branches = [{**schema, "type": t} for t in types]
    if branches:
        return _first_branch(value, branches, path, notes)
    if value is None and types not in (None, "null"):
        raise ArgumentError(f"{path or 'value'}: null where {types} is expected")
    if "enum" in schema:
        return _enum(value, schema["enum"], path, notes)
    convert = _CONVERTERS.get(types)
    return value if convert is None else convert(value, schema, path, notes)


def _first_branch(value: Any, branches: list[dict], path: str, notes: list[str]) -> Any:
    if value is None and any(b.get("type") == "null" for b in branches):
        return None
    errors = []
    for branch in branches:
        if branch.get("type") == "null":
            continue
        trial: list[str] = []
        try:
            out = coerce(value, branch, path, trial)
        except ArgumentError as e:
            errors.append(str(e))
            continue
        notes.extend(trial)
        return out
    raise ArgumentError(errors[0] if errors else f"{path or 'value'}: no schema matches")


def _enum(value: Any, allowed: list[Any], path: str, notes: list[str]) -> Any:
    if value in allowed:
        return value
    if isinstance(value, str):
        for option in allowed:
            if isinstance(option, str) and option.lower() == value.strip().lower():
                notes.append(f"{path}: {value!r} read as {option!r}")
                return option
    raise ArgumentError(f"{path or 'value'}: {value!r} is not one of {allowed!r}")


def _number(value: Any, schema: dict, path: str, notes: list[str], *, integer: bool) -> Any:
    kind = "an integer" if integer else "a number"
    original = value
    if isinstance(value, bool):
        raise ArgumentError(f"{path}: expected {kind}, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip().replace("_", ""))
        except ValueError:
            raise ArgumentError(f"{path}: expected {kind}, got {value!r}") from None
    if not isinstance(value, int | float) or math.isnan(value):
        raise ArgumentError(f"{path}: expected {kind}, got {original!r}")
    low = _bound(schema, "minimum", "exclusiveMinimum", +1, integer)
    high = _bound(schema, "maximum", "exclusiveMaximum", -1, integer)
    out = value
    if low is not None and out < low:
        out = low
    if high is not None and out > high:
        out = high
    if math.isinf(out):
        raise ArgumentError(f"{path}: {original!r} is out of range")
    if integer:
        out = int(round(out))
    in_range = (low is None or value >= low) and (high is None or value <= high)
    if out != value or type(original) is not type(out):
        notes.append(f"{path}: {original!r} {'read as' if in_range else 'clamped to'} {out!r}")
    return out


def _bound(schema: dict, inclusive: str, exclusive: str, sign: int, integer: bool) -> float | None:
    if inclusive in schema:
        return schema[inclusive]
    if exclusive in schema and not isinstance(schema[exclusive], bool):
        step = 1 if integer else 1e-9 * max(1.0, abs(schema[exclusive]))
        return schema[exclusive] + sign * step
    return None


def _string(value: Any, schema: dict, path: str, notes: list[str]) -> str:
    if isinstance(value, dict | list):
        raise ArgumentError(f"{path}: expected a string, got {type(value).__name__}")
    if not isinstance(value, str):
        text = json.dumps(value)
        notes.append(f"{path}: {value!r} read as {text!r}")
        value = text
    if len(value) < schema.get("minLength", 0):
        raise ArgumentError(f"{path}: {value!r} is shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        notes.append(f"{path}: cut to {schema['maxLength']} characters")
        value = value[: schema["maxLength"]]
    return value


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", "none", "null", ""}


def _boolean(value: Any, schema: dict, path: str, notes: list[str]) -> bool:
    if isinstance(value, bool):
        return value
    key = str(value).strip().lower()
    if isinstance(value, int | float | str) and key in _TRUE | _FALSE | {"1.0", "0.0"}:
        out = key in _TRUE or key == "1.0"
        notes.append(f"{path}: {value!r} read as {out!r}")
        return out
    raise ArgumentError(f"{path}: expected true or false, got {value!r}")


def _array(value: Any, schema: dict, path: str, notes: list[str]) -> list:
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    if not isinstance(value, list):
        if isinstance(value, tuple):
            value = list(value)
        else:
            notes.append(f"{path}: single value read as a list")
            value = [value]
    if len(value) < schema.get("minItems", 0):
        raise ArgumentError(f"{path}: needs at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        notes.append(f"{path}: cut to {schema['maxItems']} items")
        value = value[: schema["maxItems"]]
    items = schema.get("items")
    if not isinstance(items, dict):
        return value
    return [coerce(v, items, f"{path}[{i}]", notes) for i, v in enumerate(value)]


def _object(value: Any, schema: dict, path: str, notes: list[str]) -> dict:
    if not isinstance(value, dict):
        raise ArgumentError(f"{path or 'arguments'}: expected an object, got {value!r}")
    props: dict[str, dict] = schema.get("properties") or {}
    extra = schema.get("additionalProperties", not props)
    out: dict[str, Any] = {}
    required = schema.get("required", [])
    for key, item in value.items():
        if item is None and key in props and key not in required and not _nullable(props[key]):
            notes.append(f"{path}.{key}: null dropped (the default applies)")
        elif key in props:
            out[key] = coerce(item, props[key], f"{path}.{key}", notes)
        elif isinstance(extra, dict):
            out[key] = coerce(item, extra, f"{path}.{key}", notes)
        elif extra is True:
            out[key] = item
        else:
            notes.append(f"{path}.{key}: unknown argument dropped")
    missing = [k for k in required if k not in out]
    if missing:
        raise ArgumentError(f"missing required argument(s): {', '.join(missing)}")
    return out


def _nullable(schema: dict[str, Any]) -> bool:
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return any(b.get("type") == "null" for b in branches)
    types = schema.get("type")
    return types in (None, "null") or (isinstance(types, list) and "null" in types)


_CONVERTERS = {
    "integer": lambda v, s, p, n: _number(v, s, p, n, integer=True),
    "number": lambda v, s, p, n: _number(v, s, p, n, integer=False),
    "string": _string,
    "boolean": _boolean,
    "array": _array,
    "object": _object,
    "null": lambda v, s, p, n: _null(v, p),
}


def _null(value: Any, path: str) -> None:
    if value is not None:
        raise ArgumentError(f"{path}: expected null, got {value!r}")
