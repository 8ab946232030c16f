"""Input checks shared by every write path; they run in the caller's thread so a bad value
raises where it was passed, before anything is queued or written."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tracker.errors import InvalidInputError

if TYPE_CHECKING:
    from tracker.entities import Metric

MAX_KEY_LENGTH = 250
MAX_VALUE_LENGTH = 1_000_000
MAX_NAME_LENGTH = 500

_valid_keys: set[str] = set()  # keys already checked; makes the per-call check a set lookup


def check_key(key: object, what: str = "key") -> str:
    if key.__class__ is str and key in _valid_keys:
        return key  # type: ignore[return-value]
    if not isinstance(key, str):
        raise InvalidInputError(f"{what} {key!r} must be a string, got {type(key).__name__}")
    if not key or key.strip() != key:
        raise InvalidInputError(
            f"{what} {key!r} is empty or has leading/trailing spaces; give a non-empty name"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"{what} {key[:40]!r}... is {len(key)} characters; keys are at most {MAX_KEY_LENGTH}"
        )
    if "\x00" in key:
        raise InvalidInputError(f"{what} {key!r} contains a NUL character; remove it")
    if len(_valid_keys) < 100_000:
        _valid_keys.add(key)
    return key


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"{what} {name!r} must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH or "\x00" in name:
        raise InvalidInputError(
            f"{what} {name[:40]!r} must be at most {MAX_NAME_LENGTH} characters without NUL"
        )
    return name


#: Steps and timestamps are BIGINT columns on SQLite and PostgreSQL.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
_BIGINT_RANGE = "[-2**63, 2**63-1]"


def metric_value(key: str, value: object) -> float:
    """``value`` as a float; NaN and ±inf are kept, anything non-numeric is refused."""
    if value.__class__ is float:
        return value  # type: ignore[return-value]
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:
            pass  # an int or Fraction beyond float's range: refused below
    raise InvalidInputError(
        f"metric {key!r} has value {value!r:.60} of type {type(value).__name__}; metrics must "
        "be numbers within float range (log text with set_tags or log_params)"
    )


def metric_step(step: object, keys: Iterable[str] = ()) -> int:
    """``step`` as an int in the BIGINT range; ``keys`` are the metrics it is for (named in
    the error). None is step 0; an integral float is accepted, as in MLflow."""
    if step.__class__ is int and BIGINT_MIN <= step <= BIGINT_MAX:  # type: ignore[operator]
        return step  # type: ignore[return-value]
    if step is None:
        return 0
    value = _integer(step)
    if value is not None and BIGINT_MIN <= value <= BIGINT_MAX:
        return value
    names = ", ".join(repr(k) for k in keys)
    of = f" of metric{'s' if ', ' in names else ''} {names}" if names else ""
    if value is None:
        raise InvalidInputError(f"step {step!r}{of} must be an integer")
    raise InvalidInputError(
        f"step {value}{of} is out of range: steps are integers in {_BIGINT_RANGE}"
    )


def check_point(point: Metric) -> None:
    """Refuse a point the stores cannot hold, naming it: for points built without
    :func:`metric_step` and :func:`metric_value` (``log_batch``, importers)."""
    for what in ("step", "timestamp"):
        value = _integer(getattr(point, what))
        if value is None or not BIGINT_MIN <= value <= BIGINT_MAX:
            raise InvalidInputError(
                f"metric {point.key!r} has {what} {getattr(point, what)!r}; {what}s are "
                f"integers in {_BIGINT_RANGE}"
            )
    metric_value(point.key, point.value)


def _integer(value: object) -> int | None:
    """An integer (numpy's too) or an integral float as an int; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer()):
        return int(value)
    return None


def text_value(key: str, value: object, what: str) -> str:
    """Params and tags are stored as strings, as in MLflow and Qlib."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidInputError(
            f"{what} {key!r} has a value of {len(text)} characters (limit {MAX_VALUE_LENGTH}); "
            "store large values with save_objects instead"
        )
    if "\x00" in text:
        raise InvalidInputError(f"{what} {key!r} has a NUL character in its value; remove it")
    return text


def text_items(items: Mapping[str, Any], what: str) -> dict[str, str]:
    return {check_key(k, f"{what} key"): text_value(k, v, what) for k, v in items.items()}


def as_number(text: str) -> float | None:
    """A param's numeric reading, used by numeric filters; None if it is not a finite number."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
