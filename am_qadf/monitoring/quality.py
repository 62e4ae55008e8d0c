"""Data-quality metrics of a batch: completeness, NaN/missing rates, range checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from am_qadf.monitoring.batch_view import ArrayBatchView, BatchView, MessageBatchView

__all__ = ["quality_metrics"]


def _check_ranges(
    ranges: Mapping[str, tuple[float, float]] | None,
) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for k, v in (ranges or {}).items():
        try:
            lo, hi = (float(v[0]), float(v[1]))
        except (TypeError, ValueError, IndexError):
            raise ValueError(
                f"ranges[{k!r}] must be a (low, high) pair of numbers, got {v!r}"
            ) from None
        if not lo < hi:
            raise ValueError(f"ranges[{k!r}]: low ({lo}) must be below high ({hi})")
        out[str(k)] = (lo, hi)
    return out


def _present(view: BatchView, field: str) -> int:
    """How many messages carry ``field`` at all (whatever its value)."""
    if isinstance(view, MessageBatchView):
        return sum(1 for m in view.batch if isinstance(m, dict) and field in m)
    if isinstance(view, ArrayBatchView):
        return view.n if field in view.cols else 0
    return view.n


def quality_metrics(
    view: BatchView,
    signals: Sequence[str],
    ranges: Mapping[str, tuple[float, float]] | None = None,
    required_fields: Sequence[str] | None = None,
) -> dict[str, float]:
    """Flat quality metrics of one batch.

    Over ``required_fields`` (default: ``signals``): ``completeness`` is the
    fraction of values present and finite, ``missing_rate`` the fraction of
    absent keys and ``nan_rate`` the fraction present but not a finite number
    (None, NaN, inf, strings); the three add up to 1. ``out_of_range_rate`` is
    the fraction of finite values of ranged signals outside their range.
    ``<signal>_mean``/``_std`` use finite values only (NaN if there are none).

    >>> from am_qadf.monitoring.batch_view import MessageBatchView
    >>> q = quality_metrics(MessageBatchView([{"t": 1.0}, {"t": None}, {}, {"t": 9.0}]),
    ...                     ["t"], ranges={"t": (0.0, 5.0)})
    >>> q["completeness"], q["nan_rate"], q["missing_rate"], q["out_of_range_rate"], q["t_mean"]
    (0.5, 0.25, 0.25, 0.5, 5.0)
    """
    rng = _check_ranges(ranges)
    fields = list(dict.fromkeys(required_fields if required_fields is not None else signals))
    n = view.n
    out: dict[str, float] = {"n_messages": float(n)}
    total = n * len(fields)
    finite_total = missing_total = 0
    for f in fields:
        col = view.column(f)
        finite_total += int(np.count_nonzero(np.isfinite(col)))
        missing_total += n - _present(view, f)
    if total:
        out["completeness"] = finite_total / total
        out["missing_rate"] = missing_total / total
        out["nan_rate"] = (total - finite_total - missing_total) / total
    else:
        out["completeness"], out["missing_rate"], out["nan_rate"] = 1.0, 0.0, 0.0
    n_ranged = n_out = 0
    for s in signals:
        col = view.column(s)
        fin = col[np.isfinite(col)]
        if fin.size:
            out[f"{s}_mean"] = float(fin.mean())
            out[f"{s}_std"] = float(fin.std(ddof=1)) if fin.size > 1 else 0.0
        else:
            out[f"{s}_mean"] = out[f"{s}_std"] = float("nan")
        if s in rng:
            lo, hi = rng[s]
            n_ranged += fin.size
            n_out += int(np.count_nonzero((fin < lo) | (fin > hi)))
    for s, (lo, hi) in rng.items():
        if s not in signals:
            fin = view.column(s)
            fin = fin[np.isfinite(fin)]
            n_ranged += fin.size
            n_out += int(np.count_nonzero((fin < lo) | (fin > hi)))
    out["out_of_range_rate"] = n_out / n_ranged if n_ranged else 0.0
    out["invalid_count"] = float(total - finite_total)
    out["out_of_range_count"] = float(n_out)
    return out
