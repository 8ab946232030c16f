"""Turning logged objects into bytes and back, in the format their artifact name's suffix
picks: ``.parquet`` (DataFrame/Series), ``.json``, ``.txt``; any other name is pickled, as Qlib
does."""

from __future__ import annotations

import io
import json
import pickle
import posixpath
from typing import IO, Any

from tracker import errors

#: Pinned rather than HIGHEST_PROTOCOL: every Python tracker supports (>= 3.10) reads 5, and a
#: future Python's higher default must not write artifacts that older workers cannot load.
PICKLE_PROTOCOL = 5

_PARQUET_META_KEY = b"tracker"
# Any other name is pickled. ``.txt`` is text so that the code_*.txt files written at run start
# read back as text.
_FORMATS = {".parquet": "parquet", ".json": "json", ".txt": "text"}


def dumps(name: str, obj: Any) -> bytes:
    """Serialise ``obj`` in the format picked by ``name``'s suffix.

    ``.parquet``: DataFrame or Series (index, MultiIndex, names kept); ``.json``: UTF-8 JSON
    (lossy as JSON is: tuples become lists); ``.txt``: a str as UTF-8; anything else
    (``pred.pkl``, ``task``): pickle.
    Raises InvalidInputError when the object cannot be stored in that format."""
    fmt = _FORMATS.get(posixpath.splitext(name)[1].lower(), "pickle")
    try:
        if fmt == "json":
            # allow_nan=False: NaN/Infinity are not JSON and break non-Python readers.
            return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=2).encode()
        if fmt == "parquet":
            return _dump_parquet(obj)
        if fmt == "text":
            if not isinstance(obj, str):
                raise errors.InvalidTypeError(
                    f"a .txt artifact holds a str, not {type(obj).__name__}"
                )
            return obj.encode()
        return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)
    # Arrow's errors subclass these built-ins too.
    except (TypeError, ValueError, AttributeError, NotImplementedError, pickle.PicklingError) as e:
        pkl = posixpath.splitext(name)[0] + ".pkl"
        hint = "" if fmt == "pickle" else f"; name it e.g. {pkl!r} to pickle it instead"
        raise errors.InvalidInputError(f"cannot store {name!r} as {fmt}: {e}{hint}") from e


def load(name: str, file: IO[bytes], unpickler: type[pickle.Unpickler] | None = None) -> Any:
    """Reverse :func:`dumps`, reading a binary file: a pickle is unpickled as it streams, other
    formats are read whole first. ``unpickler`` replaces :class:`pickle.Unpickler` (Qlib's hook).

    Raises LoadObjectError, naming the artifact, when the bytes do not decode; errors of the
    store the file reads from (e.g. ArtifactTimeout) pass as they are."""
    fmt = _FORMATS.get(posixpath.splitext(name)[1].lower(), "pickle")
    try:
        if fmt == "pickle":
            return (unpickler or pickle.Unpickler)(file).load()
        data = file.read()
        if fmt == "parquet":
            return _load_parquet(data)
        if fmt == "json":
            return json.loads(data.decode("utf-8"))
        return data.decode("utf-8")
    except errors.UnsafeObjectError as e:  # tracker.safe_pickle refused it: say which artifact
        raise errors.UnsafeObjectError(f"artifact {name!r} {e}", e.reference) from None
    except errors.TrackerError:
        raise
    except Exception as e:
        raise errors.LoadObjectError(f"cannot load artifact {name!r} as {fmt}: {e!r}") from e


def loads(name: str, data: bytes, unpickler: type[pickle.Unpickler] | None = None) -> Any:
    """:func:`load` from bytes."""
    return load(name, io.BytesIO(data), unpickler)


# pandas/pyarrow are imported on use: they are slow to import and most store calls never need them.
def _dump_parquet(obj: Any) -> bytes:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(obj, (pd.DataFrame, pd.Series)):
        raise errors.InvalidTypeError(f"a {type(obj).__name__} is not a DataFrame or Series")
    # A one-column frame forgets that it was a Series, and to_frame() names an unnamed Series'
    # column 0, so both facts go in the schema metadata.
    is_series = isinstance(obj, pd.Series)
    meta = {"series": is_series, "unnamed": is_series and obj.name is None}
    table = pa.Table.from_pandas(obj.to_frame() if is_series else obj)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _PARQUET_META_KEY: json.dumps(meta).encode()}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _load_parquet(data: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(data))
    frame = table.to_pandas()
    meta = json.loads((table.schema.metadata or {}).get(_PARQUET_META_KEY, b"{}"))
    if meta.get("series"):
        return frame.iloc[:, 0].rename(None) if meta["unnamed"] else frame.iloc[:, 0]
    return frame
