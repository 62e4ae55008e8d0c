"""A synchronized VTK pane whose updates send only the data arrays a browser lacks.

Panel's ``pn.pane.VTK`` (``VTKRenderWindowSynchronized``) leaves out of each update the
arrays listed in its Bokeh model's ``arrays_processed``, but its browser side never
fills that list and rebuilds the whole canvas on every update, so every update re-sends
and re-draws the whole scene. ``vtk_inplace.js``, added to each page by
:func:`install_inplace`, fixes the browser side: updates are applied to the existing
render window, and the arrays the browser holds are reported in ``arrays_processed``.
:class:`IncrementalVTK` marks the render window modified on each update (vtk.js skips
a scene whose ``mtime`` did not grow) and counts the array bytes it sends.

Only the scene description (a few kB per actor) and the arrays of changed actors go
over the wire. Where the script is not active (an old page), updates stay complete and
correct, just larger.

>>> import vtk
>>> pane = IncrementalVTK(vtk.vtkRenderWindow())  # doctest: +SKIP
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import panel as pn
import panel.pane.vtk.synchronizable_serializer as rws
import param
from panel.pane.vtk.vtk import VTKRenderWindowSynchronized

__all__ = ["IncrementalVTK", "install_inplace", "scene_arrays"]

_INPLACE_JS = Path(__file__).with_name("vtk_inplace.js")


def install_inplace() -> None:
    """Add ``vtk_inplace.js`` to the scripts of every page Panel renders from now on.

    Inlined as a ``data:`` URL so it needs no static route and also works in notebooks.

    >>> install_inplace(); "amq_vtk_inplace" in pn.config.js_files
    True
    """
    if "amq_vtk_inplace" not in pn.config.js_files:
        code = base64.b64encode(_INPLACE_JS.read_bytes()).decode("ascii")
        pn.config.js_files = {
            **pn.config.js_files,
            "amq_vtk_inplace": f"data:text/javascript;base64,{code}",
        }


class IncrementalVTK(VTKRenderWindowSynchronized):
    """``pn.pane.VTK`` for a ``vtkRenderWindow`` that only sends arrays the browser lacks."""

    last_array_bytes = param.Integer(default=0, doc="Array bytes sent by the latest update.")

    last_arrays = param.Integer(default=0, doc="Arrays sent by the latest update.")

    total_array_bytes = param.Integer(default=0, doc="Array bytes sent since the pane was made.")

    _rename = {
        **VTKRenderWindowSynchronized._rename,
        "last_array_bytes": None,
        "last_arrays": None,
        "total_array_bytes": None,
    }

    def __init__(self, object: Any = None, **params: Any) -> None:
        install_inplace()
        super().__init__(object, **params)

    def _update(self, ref: str, model: Any) -> None:
        contexts = getattr(self, "_contexts", None)
        context = contexts.get(model.id) if isinstance(contexts, dict) else None
        if context is None or not hasattr(context, "getCachedDataArray"):
            super()._update(ref, model)  # unknown Panel internals: Panel's own update
            return
        # Panel's _serialize_ren_win, except that only arrays the scene uses and the
        # browser lacks are encoded (Panel also re-sends every array released within 20 s).
        ren_win = self.object
        ren_win.OffScreenRenderingOn()
        ren_win.Modified()  # vtk.js skips a scene whose mtime did not grow
        ren_win.Render()
        scene = rws.serializeInstance(None, ren_win, context.getReferenceId(ren_win), context, 0)
        scene["properties"]["numberOfLayers"] = 2  # the browser's orientation widget layer
        missing = scene_arrays(scene) - set(model.arrays_processed or ())
        arrays = {
            h: context.getCachedDataArray(h, binary=True, compression=False)
            for h in missing
            if h in context.dataArrayCache
        }
        context.checkForArraysToRelease()
        nbytes = sum(len(v) for v in arrays.values())
        self.param.update(
            last_array_bytes=nbytes,
            last_arrays=len(arrays),
            total_array_bytes=self.total_array_bytes + nbytes,
        )
        model.update(arrays=arrays, scene=scene, annotations=context.getAnnotations())


def scene_arrays(state: Any) -> set[str]:
    """Hashes of every data array a serialised VTK scene refers to (array descriptions
    sit under ``arrays``, ``properties.points``, ``properties.fields`` and others).

    >>> sorted(scene_arrays({"arrays": [{"hash": "a"}], "dependencies": [
    ...     {"properties": {"points": {"hash": "b"}, "fields": [{"hash": "c"}]}}]}))
    ['a', 'b', 'c']
    """
    found: set[str] = set()
    stack = [state]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("hash"), str):
                found.add(node["hash"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
