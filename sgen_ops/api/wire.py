"""The JSON shapes of the surface's answers over HTTP, written by ``sgen_ops.api`` and read back by
``sgen_ops.api.client``, so that a remote ``Operations`` returns what a local one does.

- Dataclasses (``JobPage``, ``JobDetail`` with its ``AttemptRecord`` items, ``VerifyResult``) travel as
  objects of their fields, times as ISO 8601 text; ``decode`` rebuilds them from the field types.
- An id a creation answers travels as ``{"id"}``, a list of times (fire times) as ``{"fire_times"}``, and
  nothing as an empty answer. ``codec`` picks the shape from the operation's return annotation.
- DataFrames travel as ``{"columns", "dtypes", "items", "datetimes", "tuples"}``: one object per row (what an
  integration reads), each column's pandas dtype, and where inside a column's cells times and tuples sat
  (``next_fires`` holds lists of times, ``recent_runs`` lists of tuples), so ``decode_frame`` rebuilds the
  same columns, dtypes and values.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pandas as pd

T = TypeVar("T")

# A step into a cell: "*" any list element, an int a tuple's position, "k:<key>" a dict's key.
Path = tuple[str | int, ...]


def timestamp(value: datetime) -> str:
    """A time as ISO 8601 text in UTC (a naive time is taken as UTC)."""
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.isoformat()


def parse_time(text: str) -> datetime:
    """ISO 8601 text back to an aware UTC datetime."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any, path: Path, times: set[Path] | None, tuples: set[Path] | None) -> Any:
    """``value`` as JSON data, noting where times and tuples were (when asked)."""
    if _missing(value):
        return None
    if isinstance(value, datetime):
        if times is not None:
            times.add(path)
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), (*path, f"k:{f.name}"), times, tuples)
                for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        if tuples is not None:
            tuples.add(path)
        return [_plain(v, (*path, i), times, tuples) for i, v in enumerate(value)]
    if isinstance(value, list | set | frozenset):
        return [_plain(v, (*path, "*"), times, tuples) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, (*path, f"k:{k}"), times, tuples) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        return _plain(value.item(), path, times, tuples)
    return value


def encode(value: Any) -> Any:
    """A dataclass, list or scalar as JSON data (times as ISO text, tuples as lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_dataclass(value)
    return _plain(value, (), None, None)


# How each field of a dataclass is written, by its type: "time", "scalar" (as it is), or anything else.
_SCALARS = (str, int, float, bool, type(None))


@functools.cache
def _field_plan(cls: type) -> tuple[tuple[str, str], ...]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a hint naming what only a type checker imports: write each field whole
        return tuple((f.name, "deep") for f in dataclasses.fields(cls))
    plan = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kind = ("time" if _is_time(hint) else
                "scalar" if all(o in _SCALARS for o in options) else
                "list" if typing.get_origin(hint) is list else "deep")
        plan.append((f.name, kind))
    return tuple(plan)


def _encode_dataclass(value: Any) -> dict[str, Any]:
    """``_plain`` of a dataclass, field by field as its type says (the hot answers: pages and details)."""
    out: dict[str, Any] = {}
    for name, kind in _field_plan(type(value)):  # type: ignore[arg-type]
        v = getattr(value, name)
        if kind == "scalar" or v is None:
            out[name] = v
        elif kind == "time":
            out[name] = timestamp(v)
        elif kind == "list" and all(dataclasses.is_dataclass(i) and not isinstance(i, type) for i in v):
            out[name] = [_encode_dataclass(i) for i in v]
        else:
            out[name] = _plain(v, (), None, None)
    return out


# -- DataFrames ------------------------------------------------------------------------------------
def encode_frame(frame: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as rows of JSON with its dtypes and the places of times and tuples inside cells."""
    columns = [str(c) for c in frame.columns]
    times: dict[str, set[Path]] = {c: set() for c in columns}
    tuples: dict[str, set[Path]] = {c: set() for c in columns}
    cells: dict[str, list[Any]] = {}
    for name, column in zip(columns, frame.columns, strict=True):
        series = frame[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series.dtype):
            cells[name] = [None if _missing(v) else timestamp(v) for v in series]
        else:
            cells[name] = [_plain(v, (), times[name], tuples[name]) for v in series.tolist()]
    items = [{name: cells[name][i] for name in columns} for i in range(len(frame))]
    return {
        "columns": columns,
        "dtypes": {name: str(frame[column].dtype) for name, column in zip(columns, frame.columns, strict=True)},
        "items": items,
        "datetimes": {c: sorted((list(p) for p in paths), key=str) for c, paths in times.items() if paths},
        "tuples": {c: sorted((list(p) for p in paths), key=str) for c, paths in tuples.items() if paths},
    }


def _revive(value: Any, path: Path, times: set[Path], tuples: set[Path]) -> Any:
    if value is None:
        return None
    if path in times and isinstance(value, str):
        return parse_time(value)
    if isinstance(value, list):
        if path in tuples:
            return tuple(_revive(v, (*path, i), times, tuples) for i, v in enumerate(value))
        return [_revive(v, (*path, "*"), times, tuples) for v in value]
    if isinstance(value, dict):
        return {k: _revive(v, (*path, f"k:{k}"), times, tuples) for k, v in value.items()}
    return value


def decode_frame(data: dict[str, Any]) -> pd.DataFrame:
    """``encode_frame``'s answer back to the DataFrame it was made from: columns, dtypes and values."""
    columns: list[str] = data["columns"]
    dtypes: dict[str, str] = data["dtypes"]
    items: list[dict[str, Any]] = data["items"]
    out: dict[str, pd.Series] = {}
    for name in columns:
        times = {tuple(p) for p in data.get("datetimes", {}).get(name, [])}
        tuples = {tuple(p) for p in data.get("tuples", {}).get(name, [])}
        values = [_revive(row.get(name), (), times, tuples) for row in items]
        dtype = dtypes[name]
        if dtype.startswith("datetime64"):
            series = pd.Series(pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601"))
            out[name] = series.astype(dtype)
        elif dtype == "object":
            out[name] = pd.Series(values, dtype=object)
        else:
            out[name] = pd.Series(values, dtype=dtype)
    frame = pd.DataFrame(out, columns=columns)
    return frame.astype({name: dtypes[name] for name in columns}) if len(frame) == 0 else frame


PARQUET = "application/vnd.apache.parquet"


def encode_parquet(frame: pd.DataFrame) -> bytes:
    """A DataFrame as a Parquet file: columns of JSON values (payloads) as JSON text."""
    import io
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = frame.copy()
    for column in plain.columns:
        if plain[column].dtype == object and any(isinstance(v, dict | list) for v in plain[column]):
            plain[column] = [None if v is None else json.dumps(_plain(v, (), None, None), ensure_ascii=False)
                             for v in plain[column]]
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(plain, preserve_index=False), sink, compression="zstd")
    return sink.getvalue()


# -- dataclasses ---------------------------------------------------------------------------------------
def _is_time(hint: Any) -> bool:
    if hint is datetime:
        return True
    # ``datetime | None`` is a types.UnionType; typing's own unions (Optional[...]) have the origin Union.
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    return union and datetime in typing.get_args(hint)


# The times inside a dataclass's dict fields, by class and field: a job's schedule summary, the archive's last run.
DICT_TIMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("JobDetail", "schedule"): ("next_run", "last_run"),
    ("Summary", "last_run"): ("started_at", "finished_at", "cutoff", "oldest", "newest"),
}


def decode(cls: type[T], data: dict[str, Any]) -> T:
    """A dataclass from ``encode``'s JSON: its time fields parsed (and the times ``DICT_TIMES`` names inside
    its dict fields), dataclasses and lists of them rebuilt."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        if value is None:
            pass
        elif _is_time(hint):
            value = parse_time(value)
        elif typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            if dataclasses.is_dataclass(item):
                value = [decode(item, v) for v in value]  # type: ignore[arg-type]
        elif isinstance(value, dict):
            options = typing.get_args(hint) or (hint,)
            nested = [o for o in options if isinstance(o, type) and dataclasses.is_dataclass(o)]
            times = DICT_TIMES.get((cls.__name__, f.name), ())
            if nested:
                value = decode(nested[0], value)
            elif times:
                value = {k: parse_time(v) if k in times and isinstance(v, str) else v for k, v in value.items()}
        values[f.name] = value
    return cls(**values)


# -- an operation's answer -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Codec:
    """How one operation's answer travels: ``encode`` on the server, ``decode`` in the remote client;
    ``kind`` names the shape ("none", "id", "count", "frame", "fire_times", or the dataclass)."""

    kind: Any
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _nothing(value: Any) -> None:
    return None


def codec(method: Callable[..., Any], status: int) -> Codec:
    """The shape of ``method``'s answer, from its return annotation (``status`` 201: an id made)."""
    hint = typing.get_type_hints(method).get("return")
    if hint is None or hint is type(None):
        return Codec("none", _nothing, _nothing)
    if hint is int and status == 201:
        return Codec("id", lambda value: {"id": int(value)}, lambda data: int(data["id"]))
    if hint is int:
        return Codec("count", int, int)
    if hint is pd.DataFrame:
        return Codec("frame", encode_frame, decode_frame)
    if hint == list[datetime]:
        return Codec("fire_times", lambda value: {"fire_times": encode(value)},
                     lambda data: [parse_time(t) for t in data["fire_times"]])
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        cls: type[Any] = hint
        return Codec(cls, encode, lambda data: decode(cls, data))
    raise TypeError(f"{getattr(method, '__qualname__', method)} answers {hint!r}, which has no shape over HTTP")
