"""The built-in ``voxel_processor``: streamed messages into the voxel grid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from am_qadf.machine_profile import MachineProfile

from .incremental_processor import IncrementalProcessor
from .message_columns import ColumnCache

__all__ = ["VoxelProcessor", "DEFAULT_VOXEL_SIGNALS"]

#: The simulator profile's signals (a client passes its own profile's).
DEFAULT_VOXEL_SIGNALS: tuple[str, ...] = MachineProfile.default().signal_names


class VoxelProcessor:
    """Feed the ``x, y, z`` and signal fields of each batch into an
    :class:`IncrementalProcessor`; report what changed in this batch.

    After each batch the processor hands the incremental processor's updated regions
    on in its result (``updated_voxels`` count and the 8x8x8 ``bricks`` they lie in)
    and resets them, so every batch reports only its own changes.

    >>> from am_qadf.voxelization.voxel_grid import VoxelGrid
    >>> proc = VoxelProcessor(IncrementalProcessor(VoxelGrid((0, 0, 0), (10, 10, 10), 1.0)))
    >>> proc([{"x": 1.5, "y": 1.5, "z": 1.5, "temperature": 1800.0}])["updated_voxels"]
    1
    """

    def __init__(
        self,
        incremental: IncrementalProcessor,
        signals: Sequence[str] = DEFAULT_VOXEL_SIGNALS,
        coordinate_fields: tuple[str, str, str] = ("x", "y", "z"),
        column_cache: ColumnCache | None = None,
    ) -> None:
        if not isinstance(incremental, IncrementalProcessor):
            raise TypeError(
                f"incremental must be an IncrementalProcessor, got {type(incremental).__name__}"
            )
        self.incremental = incremental
        self.signals = tuple(signals)
        self.coordinate_fields = coordinate_fields
        # share the client's cache so every processor converts a field once per batch
        self.column_cache = column_cache if column_cache is not None else ColumnCache()

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        cols = self.column_cache.columns(batch, (*self.coordinate_fields, *self.signals))
        coords = np.column_stack([cols[f] for f in self.coordinate_fields])
        present = {s: cols[s] for s in self.signals if not np.isnan(cols[s]).all()}
        if not present:  # points with no known signal still mark where the laser was
            present = {"value": np.ones(len(batch))}
        inc = self.incremental
        with inc._lock:  # one batch's update and its change report stay together
            inc.update_voxel_grid(present, coords)
            count = inc.get_statistics()["updated_regions_count"]
            bricks = inc.get_updated_bricks()
            inc.reset_updated_regions()
        return {"updated_voxels": int(count), "bricks": bricks, "points": len(batch)}
