"""Record a simulated build to CSV/Parquet and replay a recording as message batches.

Replay paces batches by the messages' own timestamps divided by ``speed``
(1.0 = real time, 10 = ten times faster, 0 or inf = as fast as possible).
Files are read in chunks, so a recording larger than memory replays fine.
pandas and pyarrow are needed (``pip install am-qadf-live[replay]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from am_qadf.simulation.build_simulator import MESSAGE_FIELDS
from am_qadf.simulation.pacing import Pacer

if TYPE_CHECKING:
    from am_qadf.simulation.build_simulator import BuildSimulator

__all__ = ["FileReplay", "write_recording"]

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_EPOCH_US = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"format must be 'csv' or 'parquet', got {fmt!r}")
        return fmt
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its suffix; use .csv, .parquet or .pq, "
            f"or pass format="
        ) from None


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "recording/replay needs pandas and pyarrow: pip install am-qadf-live[replay]"
        ) from e
    return pd


def write_recording(
    path: str | Path,
    simulator: BuildSimulator,
    n_points: int | None = None,
    *,
    format: str | None = None,
) -> int:
    """Write the first ``n_points`` simulated points (default: the whole stream) to a
    CSV or Parquet file with the message columns; return the number of rows.

    Blanked sensor values are written as empty/NaN and dropped messages are
    absent, so a replay shows the same gaps.

    >>> import tempfile, os
    >>> from am_qadf.simulation import BuildSimulator
    >>> sim = BuildSimulator(seed=0, n_points=1_000, n_defects=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "build.parquet")
    >>> write_recording(path, sim)
    1000
    """
    pd = _pandas()
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    fmt = _format_of(path, format)
    rows = 0
    writer = None
    first = True
    try:
        for c in simulator.iter_arrays(n_points=n_points):
            us = np.rint(c["timestamp"] * 1e6).astype(np.int64)
            data: dict[str, Any] = {}
            for f in MESSAGE_FIELDS:
                if f == "timestamp" and fmt == "csv":
                    # ISO 8601 in UTC, formatted by numpy in one go (strftime per row is slow).
                    iso = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
                    data[f] = np.char.add(iso, "Z")
                elif f == "timestamp":
                    data[f] = pd.to_datetime(us, unit="us", utc=True)
                elif f == "build_id":
                    data[f] = np.full(us.size, simulator.build_id, dtype=object)
                else:
                    data[f] = c[f]
            df = pd.DataFrame(data)
            if fmt == "csv":
                df.to_csv(path, mode="w" if first else "a", header=first, index=False)
            else:
                table = pa.Table.from_pandas(df, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(str(path), table.schema)
                writer.write_table(table)
            first = False
            rows += len(df)
        if first:  # nothing generated: still leave a valid, empty file
            empty = pd.DataFrame({f: [] for f in MESSAGE_FIELDS})
            if fmt == "csv":
                empty.to_csv(path, index=False)
            else:
                pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), str(path))
    finally:
        if writer is not None:
            writer.close()
    return rows


class FileReplay:
    """Replay a recorded CSV/Parquet file as lists of message dicts.

    Columns become message keys; ``timestamp`` becomes a UTC-aware datetime,
    integer columns stay ints, missing values stay NaN (floats) or are left
    out (other types). ``speed``: 1.0 real time, N times faster, 0 or inf as
    fast as possible. A recording in a machine's own shape paces on its time
    column: ``time_field`` with ``time_unit`` ``"s"``/``"ms"``/``"us"``/``"ns"``
    (epoch numbers, sent as they are) or ``"iso"`` (e.g. a machine profile's
    ``fields.time``/``fields.time_unit``).

    >>> import tempfile, os
    >>> from am_qadf.simulation import BuildSimulator
    >>> path = os.path.join(tempfile.mkdtemp(), "build.csv")
    >>> _ = write_recording(path, BuildSimulator(seed=0, n_points=2_500, n_defects=0))
    >>> [len(b) for b in FileReplay(path, speed=0).iter_batches(batch_size=1000)]
    [1000, 1000, 500]
    """

    def __init__(
        self,
        path: str | Path,
        speed: float = 1.0,
        *,
        format: str | None = None,
        chunk_rows: int = 65_536,
        time_field: str = "timestamp",
        time_unit: str = "iso",
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"recording {str(self.path)!r} does not exist")
        self.format = _format_of(self.path, format)
        self.speed = speed
        Pacer(speed)  # validates speed
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
        self.chunk_rows = chunk_rows
        if time_unit not in _EPOCH_US and time_unit != "iso":
            raise ValueError(f"time_unit must be iso, s, ms, us or ns, got {time_unit!r}")
        self.time_field, self.time_unit = time_field, time_unit

    def _frames(self) -> Iterator[Any]:
        pd = _pandas()
        if self.format == "csv":
            yield from pd.read_csv(self.path, chunksize=self.chunk_rows)
        else:
            import pyarrow.parquet as pq

            for rb in pq.ParquetFile(str(self.path)).iter_batches(batch_size=self.chunk_rows):
                yield rb.to_pandas()

    def _records(self, df: Any) -> tuple[list[dict[str, Any]], list[int | None]]:
        pd = _pandas()
        n = len(df)
        cols: dict[str, list[Any]] = {}
        micros: list[int | None] = [None] * n
        for name in df.columns:
            s = df[name]
            if name == self.time_field and self.time_unit != "iso":  # epoch numbers: kept
                us = (
                    pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
                    * _EPOCH_US[self.time_unit]
                )
                ok = np.isfinite(us)
                micros = np.where(ok, us, 0).astype(np.int64).astype(object)
                micros[~ok] = None
                micros = micros.tolist()
                cols[name] = s.to_numpy().tolist()
            elif name == self.time_field:
                if pd.api.types.is_datetime64_any_dtype(s):
                    ts = s if s.dt.tz is not None else s.dt.tz_localize(UTC)
                else:
                    ts = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
                us = ts.dt.tz_convert(UTC).astype("datetime64[us, UTC]").array.asi8
                ok = ~ts.isna().to_numpy()
                micros = [
                    int(u) if k else None for u, k in zip(us.tolist(), ok.tolist(), strict=True)
                ]
                cols[name] = [
                    None if u is None else datetime.fromtimestamp(u / 1e6, UTC) for u in micros
                ]
            elif s.dtype.kind in "iub":
                cols[name] = s.to_numpy().tolist()
            elif s.dtype.kind == "f":
                cols[name] = s.to_numpy(dtype=np.float64).tolist()
            else:
                cols[name] = [
                    None if (v is None or (isinstance(v, float) and v != v)) else v
                    for v in s.tolist()
                ]
        names = list(cols)
        msgs = [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]
        for m in msgs:
            # Missing non-numeric values (e.g. an empty build_id) are left out, not None.
            for k in [k for k, v in m.items() if v is None]:
                del m[k]
        return msgs, micros

    def iter_batches(self, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Yield lists of ``batch_size`` message dicts, paced by their timestamps / ``speed``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        pacer = Pacer(self.speed)
        origin: int | None = None  # pace on integer µs from the first stamp: no float drift

        def due(us: int | None) -> float:
            return math.nan if us is None or origin is None else (us - origin) / 1e6

        pending: list[dict[str, Any]] = []
        pend_t: list[int | None] = []
        for df in self._frames():
            msgs, micros = self._records(df)
            if origin is None:
                origin = next((u for u in micros if u is not None), None)
            pending.extend(msgs)
            pend_t.extend(micros)
            while len(pending) >= batch_size:
                pacer.wait(due(pend_t[batch_size - 1]))
                yield pending[:batch_size]
                del pending[:batch_size], pend_t[:batch_size]
        if pending:
            pacer.wait(due(pend_t[-1]))
            yield pending

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        return self.iter_batches()

    def __repr__(self) -> str:
        return f"FileReplay({str(self.path)!r}, speed={self.speed})"
