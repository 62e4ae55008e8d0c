"""A synchronized VTK pane that sends each data array to a browser only once.

Panel's ``pn.pane.VTK`` (``VTKRenderWindowSynchronized``) serialises the whole scene
on every ``synchronize()``; it would skip the arrays listed in its Bokeh model's
``arrays_processed``, but the browser never fills that list, so every update re-sends
every array of the scene (all voxels, every time). vtk.js, on the other side, caches
arrays by content hash. :class:`IncrementalVTK` therefore remembers, per browser
model, which array hashes it sent and when; an array sent more than
``settle_seconds`` ago is assumed to be in the browser's cache and is left out of the
next update. (Arrays sent just before are sent again, because a second update that
arrives before the browser processed the first would replace the first one's arrays.)

Only the scene description (a few kB per actor) and the arrays of changed actors go
over the wire. If a future Panel changes the internals used here, the pane falls back
to Panel's own full update, so it stays correct, just slower.

>>> import vtk
>>> pane = IncrementalVTK(vtk.vtkRenderWindow())  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any

import param
from panel.pane.vtk.vtk import VTKRenderWindowSynchronized

__all__ = ["IncrementalVTK"]


class IncrementalVTK(VTKRenderWindowSynchronized):
    """``pn.pane.VTK`` for a ``vtkRenderWindow`` that only sends arrays the browser lacks."""

    settle_seconds = param.Number(
        default=1.5,
        bounds=(0.0, None),
        doc="Seconds after which a sent array is assumed cached by the browser.",
    )

    last_array_bytes = param.Integer(default=0, doc="Array bytes sent by the latest update.")

    last_arrays = param.Integer(default=0, doc="Arrays sent by the latest update.")

    total_array_bytes = param.Integer(default=0, doc="Array bytes sent since the pane was made.")

    _rename = {
        **VTKRenderWindowSynchronized._rename,
        "settle_seconds": None,
        "last_array_bytes": None,
        "last_arrays": None,
        "total_array_bytes": None,
    }

    def __init__(self, object: Any = None, **params: Any) -> None:
        super().__init__(object, **params)
        self._sent: dict[str, dict[str, float]] = {}

    def _update(self, ref: str, model: Any) -> None:
        contexts = getattr(self, "_contexts", None)
        context = contexts.get(model.id) if isinstance(contexts, dict) else None
        if context is None or not hasattr(context, "dataArrayCache"):
            super()._update(ref, model)  # unknown Panel internals: full update
            return
        now = time.monotonic()
        for stale in [k for k in self._sent if k not in contexts]:
            del self._sent[stale]
        sent = self._sent.setdefault(model.id, {})
        settled = [h for h, t in sent.items() if now - t > self.settle_seconds]
        scene, arrays, annotations = self._serialize_ren_win(
            self.object, context, exclude_arrays=settled
        )
        for h in arrays:
            sent.setdefault(h, now)
        context.checkForArraysToRelease()
        for h in [h for h in sent if h not in context.dataArrayCache]:
            del sent[h]  # released on the server: if it comes back it is sent again
        nbytes = sum(len(v) for v in arrays.values())
        self.param.update(
            last_array_bytes=nbytes,
            last_arrays=len(arrays),
            total_array_bytes=self.total_array_bytes + nbytes,
        )
        model.update(arrays=arrays, scene=scene, annotations=annotations)
