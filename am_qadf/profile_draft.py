"""Draft a machine profile from a recording (``am-qadf profile draft RECORDING``).

The draft is a starting point for a person to edit: every line is commented.
It guesses the time field and its unit (ISO text, or epoch s/ms/µs/ns from the
magnitude of the numbers), the position, layer and build fields from their
names, and makes every other numeric column a signal with alarm limits from
robust statistics (median ± 6 × 1.4826 × MAD, so a few spikes do not widen
them) and a plausible range. The draft parses as a valid profile.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from am_qadf.machine_profile import MachineProfile

__all__ = ["draft_profile"]

_ROLES: dict[str, tuple[str, ...]] = {
    "x": ("x", "pos_x", "x_mm", "posx", "x_pos"),
    "y": ("y", "pos_y", "y_mm", "posy", "y_pos"),
    "z": ("z", "pos_z", "z_mm", "posz", "z_pos", "height"),
    "layer": ("layer", "layer_no", "layer_number", "layer_id", "layer_index", "layernr"),
    "build": ("build", "build_id", "job", "job_id", "buildjob"),
}
_TIME_NAMES = re.compile(r"^(timestamp|time|ts|t|datetime|date_time|time_\w+|\w+_time|epoch\w*)$")
# epoch magnitudes of today's dates, per unit (1e9 s ~ 2001; 1e12 ms; ...)
_UNITS = (("ns", 1e17), ("us", 1e14), ("ms", 1e11), ("s", 1e8))


def _read(path: Path, rows: int) -> Any:
    from am_qadf.simulation.replay import _format_of, _pandas

    pd = _pandas()
    if _format_of(path, None) == "csv":
        return pd.read_csv(path, nrows=rows)
    import pyarrow.parquet as pq

    batches = pq.ParquetFile(str(path)).iter_batches(batch_size=rows)
    first = next(batches, None)
    return first.to_pandas() if first is not None else pd.DataFrame()


def _signal_name(column: str) -> str:
    name = re.sub(r"[^0-9A-Za-z_]+", "_", column).strip("_").lower() or "signal"
    if name[0].isdigit():
        name = "s_" + name
    return name


def _num(v: float) -> str:
    return f"{float(f'{v:.6g}')!r}"


def _time_unit(values: np.ndarray) -> str:
    med = float(np.nanmedian(np.abs(values))) if values.size else 0.0
    for unit, floor in _UNITS:
        if med >= floor:
            return unit
    return "s"  # seconds since the start of the build, most likely


def draft_profile(path: str | Path, *, rows: int = 100_000, machine_id: str | None = None) -> str:
    """A commented TOML profile for the recording at ``path`` (CSV or Parquet), from
    its first ``rows`` rows.

    >>> import os, tempfile, pandas as pd
    >>> f = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> pd.DataFrame({"ts": [1.7e12 + i for i in range(50)], "pos_x": 1.0, "pos_y": 2.0,
    ...               "layer_no": 3, "mp_temp_C": [1600.0 + i % 5 for i in range(50)]}
    ...              ).to_csv(f, index=False)
    >>> text = draft_profile(f)
    >>> p = MachineProfile.from_toml(text)
    >>> p.fields.time, p.fields.time_unit, p.fields.x, p.signal("mp_temp_c").field
    ('ts', 'ms', 'pos_x', 'mp_temp_C')
    """
    path = Path(path)
    df = _read(path, rows)
    if df.empty:
        raise ValueError(f"{path}: the recording has no rows to learn from")
    cols = list(df.columns)
    lower = {c.lower(): c for c in cols}
    roles: dict[str, str] = {}
    for role, names in _ROLES.items():
        found = next((lower[n] for n in names if n in lower), None)
        if found is not None:
            roles[role] = found
    time_col = next((c for c in cols if _TIME_NAMES.match(c.lower())), None)
    unit = "iso"
    if time_col is not None and df[time_col].dtype.kind in "iuf":
        unit = _time_unit(df[time_col].to_numpy(np.float64))
    numeric = [c for c in cols if df[c].dtype.kind in "iuf" and c not in roles.values()]
    signals = [c for c in numeric if c != time_col]
    out: list[str] = [
        f"# Machine profile drafted by `am-qadf profile draft` from {path.name}",
        f"# ({len(df):,} rows read). Check every line, then run with",
        "#   AMQADF_PROFILE=this-file.toml  am-qadf monitor   (or make demo)",
        "",
        "[machine]",
        f"id = {json.dumps(machine_id or _signal_name(path.stem))}  # Kafka message key",
        f"name = {json.dumps(path.stem)}",
        'material = ""                 # recipe key for stored SPC baselines',
        "# plate_mm = [250.0, 250.0, 300.0]  # build volume in mm: set your machine's",
        "voxel_mm = 0.5",
        "",
        "[fields]",
    ]
    if time_col is None:
        out.append('# time = "?"                    # no time column recognised: name it')
    else:
        out.append(f"time = {json.dumps(time_col)}")
        hint = "guessed from the size of the numbers" if unit != "iso" else "text timestamps"
        out.append(f'time_unit = "{unit}"  # {hint}; "iso" | "s" | "ms" | "us" | "ns"')
    for role in ("x", "y", "z", "layer"):
        if role in roles:
            out.append(f"{role} = {json.dumps(roles[role])}")
        else:
            out.append(f'# {role} = "?"  # not recognised: name the column')
    if "z" not in roles:
        out.append("layer_thickness_mm = 0.04  # z = layer × this where there is no z; check it")
    if "build" in roles:
        out.append(f"build = {json.dumps(roles['build'])}")
    out.append('# layer_count = "?"  # a field with the build\'s layer count, if the job sends it')
    for c in signals:
        v = df[c].to_numpy(np.float64)
        v = v[np.isfinite(v)]
        out += ["", f"[signals.{_signal_name(c)}]", f"field = {json.dumps(c)}"]
        out.append(f"label = {json.dumps(c.replace('_', ' '))}")
        out.append('unit = ""                      # value = raw * scale + offset, in this unit')
        out.append("# scale = 1.0")
        out.append("# offset = 0.0")
        if v.size >= 10:
            med = float(np.median(v))
            mad = 1.4826 * float(np.median(np.abs(v - med)))
            lo, hi = float(v.min()), float(v.max())
            if mad > 0:
                out.append(f"low = {_num(med - 6 * mad)}   # median − 6 robust σ of the recording")
                out.append(f"high = {_num(med + 6 * mad)}  # median + 6 robust σ")
            span = max(hi - lo, abs(med) * 0.1, 1e-9)
            out.append(f"range = [{_num(lo - span)}, {_num(hi + span)}]  # plausible values")
            out.append('spc = "none"  # "ewma" | "imr" | "xbar_s" | "cusum" for a process response')
        else:
            out.append("# too few values for limits: set low/high yourself")
    text = "\n".join(out) + "\n"
    MachineProfile.from_toml(text, source=f"draft of {path.name}")  # the draft must parse
    return text
