"""Unpickling artifacts without running code from the store, for commands that only look.

A pickle names the functions that rebuild it, and unpickling calls them: ``pred.pkl`` written
by someone who can write to a shared store can run anything on every machine that merely
shows it. :class:`SafeUnpickler` resolves only the names in :data:`ALLOWED`, what pandas
frames, series and indexes, numpy arrays and stdlib values (dates, times, bytes, sets...) need
to rebuild themselves, and refuses every other name with
:class:`~tracker.errors.UnsafeObjectError` naming it. The list was built by pickling
such objects (protocols 0-5, with pandas 2.2/numpy 1.26 and pandas 3/numpy 2) and recording
every name they reference; ``tests/test_safe_pickle.py`` loads such objects and refuses names
that run code.

Three more things a restricted unpickler must do, because an allow-list of names is not enough:

- Names that are not data-only in general resolve to wrappers that check their arguments:
  ``getattr`` only for ``ZoneInfo._unpickle`` (how a time zone pickles), ``_codecs.encode``
  only to Latin-1 (how protocols 0-2 store bytes), ``copyreg._reconstructor`` only as
  ``object.__new__(cls)`` (protocols 0-1), and pyarrow arrays are validated in full.
- A pickle may BUILD (set the state of) any object it holds, including a class: that would
  rewrite pandas' classes for the rest of the process (a long-lived ``tracker ui``). BUILD on
  a class is refused, which is why this is the Python implementation of the unpickler.
- pandas and numpy trust the indexes inside their own pickles (block placements, MultiIndex
  and categorical codes, masks, field offsets) and read memory through them unchecked: a
  crafted frame crashes the reader, or worse, on first display. After loading, every such
  structure anywhere in the result is checked (:func:`check_structures`); structured numpy
  dtypes, whose field offsets cannot be checked cheaply, are refused.

With ``placeholders=True`` (:class:`PlaceholderUnpickler`) a refused name becomes an inert
:class:`CodeReference` instead of an error, so that a task holding a model class still shows
its dates: ``<not shown: contains code reference tracker.online.model.base.LGBModel>``.

:meth:`tracker.Recorder.load_object` itself stays plain pickle, as in Qlib.
"""

from __future__ import annotations

import _compat_pickle
import copyreg
import gc
import io
import pickle
import sys
import types
from collections.abc import Callable, Iterable
from typing import IO, Any, ClassVar

from tracker.errors import UnsafeObjectError

__all__ = [
    "ALLOWED",
    "CodeReference",
    "PlaceholderUnpickler",
    "SafeUnpickler",
    "check_structures",
    "safe_load",
    "safe_loads",
]

_NUMPY = [
    "numpy.ndarray",
    "numpy.dtype",
    *(
        f"numpy.{core}.{name}"
        for core in ("_core", "core")  # numpy 2, numpy 1
        for name in ("multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer")
    ),
]

_PANDAS_INTERNALS = [
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
    "pandas._libs.internals._unpickle_block",
    "pandas._libs.tslibs.nattype._nat_unpickle",
    "pandas._libs.tslibs.nattype.__nat_unpickle",  # pandas 2
    "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
    "pandas._libs.tslibs.timestamps._unpickle_timestamp",
    "pandas.core.indexes.base._new_Index",
    "pandas.core.indexes.datetimes._new_DatetimeIndex",
    "pandas.core.indexes.timedeltas._new_TimedeltaIndex",
    "pandas.core.internals.managers.BlockManager",
    "pandas.core.internals.managers.SingleBlockManager",
]

_INTS = [f"{u}Int{b}Dtype" for u in ("", "U") for b in (8, 16, 32, 64)]
# Where pandas 3 pickles a name (its public path) and where pandas 2 did (its home module).
_PANDAS_MOVED = {
    "DataFrame": "core.frame",
    "Series": "core.series",
    "Index": "core.indexes.base",
    "MultiIndex": "core.indexes.multi",
    "RangeIndex": "core.indexes.range",
    "DatetimeIndex": "core.indexes.datetimes",
    "TimedeltaIndex": "core.indexes.timedeltas",
    "PeriodIndex": "core.indexes.period",
    "CategoricalIndex": "core.indexes.category",
    "Categorical": "core.arrays.categorical",
    "CategoricalDtype": "core.dtypes.dtypes",
    "DatetimeTZDtype": "core.dtypes.dtypes",
    "PeriodDtype": "core.dtypes.dtypes",
    "ArrowDtype": "core.dtypes.dtypes",
    "StringDtype": "core.arrays.string_",
    "BooleanDtype": "core.arrays.boolean",
    **dict.fromkeys(_INTS, "core.arrays.integer"),
    "Float32Dtype": "core.arrays.floating",
    "Float64Dtype": "core.arrays.floating",
    "Period": "_libs.tslibs.period",
    "NA": "_libs.missing",
}
_PANDAS_ARRAYS = {
    "DatetimeArray": "core.arrays.datetimes",
    "TimedeltaArray": "core.arrays.timedeltas",
    "PeriodArray": "core.arrays.period",
    "IntegerArray": "core.arrays.integer",
    "FloatingArray": "core.arrays.floating",
    "BooleanArray": "core.arrays.boolean",
    "StringArray": "core.arrays.string_",
    "ArrowStringArray": "core.arrays.string_arrow",
    "ArrowExtensionArray": "core.arrays.arrow.array",
}
_OFFSETS = [  # the frequencies of date ranges ("D", "B", "W", "ME", "QE", "h", ...)
    *("Day", "Hour", "Minute", "Second", "Milli", "Micro", "Nano", "Week"),
    *("BusinessDay", "CustomBusinessDay", "SemiMonthEnd", "SemiMonthBegin"),
    *("MonthEnd", "MonthBegin", "BusinessMonthEnd", "BusinessMonthBegin"),
    *("QuarterEnd", "QuarterBegin", "BQuarterEnd", "BQuarterBegin"),
    *("YearEnd", "YearBegin", "BYearEnd", "BYearBegin"),
]

#: Every ``module.name`` a pickle may reference (data types and their rebuild helpers).
ALLOWED: frozenset[str] = frozenset(
    [
        *(f"builtins.{n}" for n in ("bytearray", "bytes", "complex", "frozenset", "set")),
        *(f"builtins.{n}" for n in ("range", "slice", "object")),
        *(f"datetime.{n}" for n in ("date", "datetime", "time", "timedelta", "timezone")),
        "zoneinfo.ZoneInfo",
        "pytz._p",  # time zones of pandas 2, which depends on pytz
        "pytz._UTC",
        *_NUMPY,
        *_PANDAS_INTERNALS,
        *(f"pandas.{n}" for n in _PANDAS_MOVED),
        *(f"pandas.{m}.{n}" for n, m in _PANDAS_MOVED.items()),
        *(f"pandas.arrays.{n}" for n in _PANDAS_ARRAYS),
        *(f"pandas.{m}.{n}" for n, m in _PANDAS_ARRAYS.items()),
        *(f"pandas._libs.tslibs.offsets.{n}" for n in _OFFSETS),
        "pyarrow.lib.py_buffer",
        "pyarrow.lib.type_for_alias",
    ]
)

#: Names that are not data-only in general, resolved to a method that checks the arguments.
_CHECKED = {
    "builtins.getattr": "_checked_getattr",
    "_codecs.encode": "_checked_encode",
    "copyreg._reconstructor": "_checked_reconstructor",
    "pyarrow.lib._restore_array": "_checked_restore_array",
}


class _CodeReferenceType(type):
    def __repr__(cls) -> str:
        return f"<not shown: contains code reference {cls.reference}>"  # type: ignore[attr-defined]

    __str__ = __repr__


class CodeReference(metaclass=_CodeReferenceType):
    """What a refused name becomes with ``placeholders=True``: a class named after it, whose
    calls, instances and state do nothing. Its repr and str say what was not shown."""

    reference: ClassVar[str] = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # nothing is run or kept

    def __call__(self, *args: Any, **kwargs: Any) -> CodeReference:
        return self  # a refused callable object (e.g. a functools.partial) is called: no-op

    def __setstate__(self, state: Any) -> None:
        pass

    # Refused list, dict and set subclasses are still filled by APPENDS/SETITEMS/ADDITEMS.
    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Iterable[Any]) -> None:
        pass

    def add(self, item: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __repr__(self) -> str:
        return repr(type(self))

    __str__ = __repr__


def _placeholder(reference: str) -> type[CodeReference]:
    name = reference.rsplit(".", 1)[-1]
    return _CodeReferenceType(name, (CodeReference,), {"reference": reference})  # type: ignore[return-value]


def _refuse(reference: str, why: str = "") -> UnsafeObjectError:
    detail = why or "not one of the pandas/numpy/stdlib data types that are loaded here"
    return UnsafeObjectError(
        f"refers to {reference} ({detail}); load it with Recorder.load_object() only if you "
        "trust whoever can write to this store",
        reference,
    )


class SafeUnpickler(pickle._Unpickler):
    """:class:`pickle.Unpickler` that runs no code named by the pickle (see the module)."""

    placeholders: ClassVar[bool] = False
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3:  # Python 2 names, as pickle's own find_class maps them
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        reference = f"{module}.{name}"
        if reference in _CHECKED:
            return getattr(self, _CHECKED[reference])
        if reference not in ALLOWED:
            if self.placeholders:
                return _placeholder(reference)
            raise _refuse(reference)
        if module.startswith("numpy.core.") and _numpy_major() >= 2:
            module = "numpy._core." + module[len("numpy.core.") :]  # numpy 2 warns on the old
        return super().find_class(module, name)

    def load(self) -> Any:
        obj = super().load()
        check_structures(obj)
        return obj

    def load_build(self) -> None:
        if isinstance(self.stack[-2], type):
            target = self.stack[-2]
            raise _refuse(
                f"{target.__module__}.{target.__qualname__}",
                "the pickle sets attributes of a class, which would change it for the whole "
                "process",
            )
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    # ----------------------------------------------------------------- checked wrappers
    # Each takes *args so that any call a pickle makes is checked here, never half-bound.

    def _checked_getattr(self, *args: Any) -> Any:
        from zoneinfo import ZoneInfo

        if len(args) == 2 and args[0] is ZoneInfo and args[1] == "_unpickle":
            return ZoneInfo._unpickle
        if self.placeholders and len(args) == 2 and isinstance(args[0], _CodeReferenceType):
            return _placeholder(f"{args[0].reference}.{args[1]}")  # type: ignore[attr-defined]
        raise _refuse("builtins.getattr", "looked up for ZoneInfo._unpickle only")

    @staticmethod
    def _checked_encode(*args: Any) -> bytes:
        if len(args) == 2 and isinstance(args[0], str) and args[1] == "latin1":
            return args[0].encode("latin-1")
        raise _refuse("_codecs.encode", "used for Latin-1, how protocols 0-2 store bytes, only")

    @staticmethod
    def _checked_reconstructor(*args: Any) -> Any:
        if len(args) == 3 and isinstance(args[0], type) and args[1] is object and args[2] is None:
            return copyreg._reconstructor(*args)  # type: ignore[attr-defined]
        raise _refuse("copyreg._reconstructor", "loaded in its object.__new__(cls) form only")

    @staticmethod
    def _checked_restore_array(*args: Any) -> Any:
        from pyarrow.lib import _restore_array

        array = _restore_array(*args)
        array.validate(full=True)  # buffers must hold the lengths and offsets they claim
        return array


class PlaceholderUnpickler(SafeUnpickler):
    """:class:`SafeUnpickler` that puts a :class:`CodeReference` where a refused name was."""

    placeholders = True


def safe_load(file: IO[bytes], *, placeholders: bool = False) -> Any:
    """Unpickle from a binary file, running no code from it (see the module)."""
    return (PlaceholderUnpickler if placeholders else SafeUnpickler)(file).load()


def safe_loads(data: bytes, *, placeholders: bool = False) -> Any:
    """Unpickle bytes, running no code from them (see the module)."""
    return safe_load(io.BytesIO(data), placeholders=placeholders)


def _numpy_major() -> int:
    import numpy

    return int(numpy.__version__.split(".", 1)[0])


# --------------------------------------------------------------------------- structures

# Nothing in these refers to a structure to check; classes, modules and functions are where
# pandas' own code and globals start, which the walk must not enter.
_LEAVES = (str, bytes, bytearray, int, float, complex, type(None), range)
_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)


def check_structures(obj: Any) -> None:
    """Raise UnsafeObjectError if ``obj`` holds, anywhere, a pandas/numpy structure whose
    internal indexes point outside its data (only possible in a crafted pickle)."""
    checks = _checks()
    if not checks:
        return  # neither numpy nor pandas was imported: the pickle held neither
    np = sys.modules["numpy"]
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if isinstance(item, (_LEAVES, _OPAQUE)) or id(item) in seen:
            continue
        seen.add(id(item))
        for kind, check in checks:
            if isinstance(item, kind):
                _run_check(check, item)
        if isinstance(item, np.ndarray):
            # Arrays do not report their elements to gc; only object arrays hold objects.
            todo.extend(item.reshape(-1).tolist() if item.dtype == object else ())
        else:
            todo.extend(gc.get_referents(item))


def _run_check(check: Callable[[Any], None], item: Any) -> None:
    try:
        check(item)
    except UnsafeObjectError:
        raise
    except Exception as e:  # a crafted state can lack what a real one always has
        raise _bad(item, f"an inconsistent inner structure ({e!r})") from None


def _checks() -> list[tuple[type, Callable[[Any], None]]]:
    if "numpy" not in sys.modules:
        return []
    import numpy as np

    checks: list[tuple[type, Callable[[Any], None]]] = [
        (np.ndarray, lambda a: _check_dtype(a.dtype)),
        (np.generic, lambda a: _check_dtype(a.dtype)),
        (np.dtype, _check_dtype),
    ]
    if "pandas" in sys.modules:
        import pandas as pd
        from pandas.core.arrays.masked import BaseMaskedArray
        from pandas.core.internals.managers import BaseBlockManager

        checks += [
            (BaseBlockManager, _check_manager),
            (pd.MultiIndex, _check_multiindex),
            (pd.Categorical, _check_categorical),
            (BaseMaskedArray, _check_masked),
        ]
    return checks


def _bad(item: Any, what: str) -> UnsafeObjectError:
    kind = f"{type(item).__module__}.{type(item).__qualname__}"
    return UnsafeObjectError(
        f"holds a {kind} with {what}, which pandas/numpy would read out of bounds: the file "
        "is damaged or crafted",
        kind,
    )


def _check_dtype(dtype: Any) -> None:
    # Field offsets are trusted as given: a crafted one reads and writes past each item.
    if dtype.fields is not None or dtype.subdtype is not None:
        raise _refuse(
            f"numpy.dtype({dtype})", "a structured dtype, whose field offsets numpy trusts"
        )


def _check_codes(item: Any, codes: Any, size: int, what: str) -> None:
    if codes.dtype.kind not in "iu":
        raise _bad(item, f"{what} of dtype {codes.dtype}")
    if codes.size and (codes.min() < -1 or codes.max() >= size):
        raise _bad(item, f"{what} outside [-1, {size})")


def _check_manager(mgr: Any) -> None:
    import numpy as np

    axes, blocks = list(mgr.axes), list(mgr.blocks)
    if len(axes) == 1:  # a Series: one block as long as the index
        if len(blocks) != 1 or blocks[0].values.shape != (len(axes[0]),):
            raise _bad(mgr, "a block that does not match its index")
        return
    items, rows = len(axes[0]), len(axes[1])
    taken = np.zeros(items, dtype=bool)
    for block in blocks:
        if block.ndim != 2 or len(block.mgr_locs) > items:
            raise _bad(mgr, "a block placed outside its columns")
        locs = np.asarray(block.mgr_locs.as_array)
        if locs.size and (locs.min() < 0 or locs.max() >= items):
            raise _bad(mgr, f"block placements outside [0, {items})")
        if taken[locs].any() or np.unique(locs).size != locs.size:
            raise _bad(mgr, "a column placed twice")
        taken[locs] = True
        values = block.values
        expected = (len(locs), rows) if values.ndim == 2 else (rows,)
        if values.shape != expected or (values.ndim == 1 and len(locs) != 1):
            raise _bad(mgr, f"a block of shape {values.shape} placed as {expected}")
    if not taken.all():
        raise _bad(mgr, "columns that no block holds")


def _check_multiindex(index: Any) -> None:
    levels, codes, names = list(index._levels), list(index._codes), list(index._names)
    if not len(levels) == len(codes) == len(names) or len({len(c) for c in codes}) > 1:
        raise _bad(index, "levels, codes and names of different lengths")
    for level, level_codes in zip(levels, codes, strict=True):
        _check_codes(index, level_codes, len(level), "codes")


def _check_categorical(cat: Any) -> None:
    _check_codes(cat, cat.codes, len(cat.dtype.categories), "codes")


def _check_masked(array: Any) -> None:
    if array._mask.shape != array._data.shape or array._mask.dtype != bool:
        raise _bad(array, "a mask that does not match its values")
