"""Grease Pencil capture: read a drawing's strokes in bulk and turn them into stroke JSON.

Blender 4.3 replaced Grease Pencil with "GPv3": a ``GreasePencil`` data-block has layers, a layer has
frames, a frame points to a ``GreasePencilDrawing`` whose strokes are curves stored as attributes
(point ``position`` and ``radius``, curve offsets). Those are read with ``foreach_get`` in one call
each, never point by point. Data-blocks live in ``bpy.data.grease_pencils_v3`` in 4.3-4.5 and in
``bpy.data.grease_pencils`` from 5.0. Nothing is rendered: Blender draws Grease Pencil only with an
OpenGL context; the backend rasterises the strokes with the same code as the training sketches.
Main thread only.
"""
from __future__ import annotations

import hashlib
import json

import bpy
import numpy as np

from .stroke_projection import project_camera, project_front

#: Layers with this name hold the "New sketch" guide frame and are never captured.
GUIDE_LAYER_NAME = "S3D Guide"
DEFAULT_RADIUS_M = 0.01  # Grease Pencil's default point radius when the attribute is absent


def grease_pencil_datablocks():
    """The collection that holds GPv3 data-blocks in this Blender version."""
    return getattr(bpy.data, "grease_pencils_v3", None) or bpy.data.grease_pencils


def is_grease_pencil(obj) -> bool:
    """True for a Grease Pencil v3 object (Blender 4.3+)."""
    return obj is not None and obj.type == "GREASEPENCIL"


def _layer_matrix(layer) -> np.ndarray:
    m = getattr(layer, "matrix_local", None)
    return np.array(m, dtype=np.float64) if m is not None else np.eye(4)


def read_strokes(obj) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every visible, non-guide layer's drawing at the current frame, in world space.

    Args:
        obj: a Grease Pencil object.

    Returns:
        positions ``(P, 3)`` float64 metres (world), radii ``(P,)`` float64 metres (world, scaled by the
        object's mean scale), offsets ``(S + 1,)`` int64 (first point of each stroke, then P).

    Raises:
        ValueError: not a Grease Pencil object.
    """
    if not is_grease_pencil(obj):
        raise ValueError(f"{getattr(obj, 'name', obj)!r} is not a Grease Pencil object; pick one or press 'New sketch'")
    world = np.array(obj.matrix_world, dtype=np.float64)
    all_pos, all_rad, all_off, base = [], [], [0], 0
    for layer in obj.data.layers:
        if layer.hide or layer.name == GUIDE_LAYER_NAME:
            continue
        frame = layer.current_frame()
        if frame is None or frame.drawing is None:
            continue
        drawing = frame.drawing
        n_strokes = len(drawing.strokes)
        pos_attr = drawing.attributes.get("position")
        if n_strokes == 0 or pos_attr is None:
            continue
        n_points = len(pos_attr.data)
        pos = np.empty(n_points * 3, dtype=np.float32)
        pos_attr.data.foreach_get("vector", pos)
        rad_attr = drawing.attributes.get("radius")
        rad = np.full(n_points, DEFAULT_RADIUS_M, dtype=np.float32)
        if rad_attr is not None:
            rad_attr.data.foreach_get("value", rad)
        offs = np.empty(n_strokes + 1, dtype=np.int32)
        drawing.curve_offsets.foreach_get("value", offs)
        m = world @ _layer_matrix(layer)
        p = pos.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        scale = float(np.cbrt(abs(np.linalg.det(m[:3, :3])))) or 1.0
        all_pos.append(p)
        all_rad.append(rad.astype(np.float64) * scale)
        all_off.extend((offs[1:].astype(np.int64) + base).tolist())
        base += n_points
    if not all_pos:
        return np.zeros((0, 3)), np.zeros(0), np.zeros(1, dtype=np.int64)
    return np.concatenate(all_pos), np.concatenate(all_rad), np.asarray(all_off, dtype=np.int64)


def capture(obj, scene=None, projection: str = "FRONT") -> dict:
    """A Grease Pencil object's strokes -> stroke JSON (docs/contracts.md section 2).

    Args:
        obj: the Grease Pencil object.
        scene: needed for ``projection="CAMERA"`` (its active camera and render size).
        projection: "FRONT" (the canonical front orthographic input view) or "CAMERA".

    Raises:
        ValueError: no strokes, no active camera, or points behind the camera (message for the user).
    """
    if bpy.context.view_layer is not None:
        bpy.context.view_layer.update()  # matrix_world of just-moved objects is stale until the depsgraph runs
    positions, radii, offsets = read_strokes(obj)
    if len(positions) == 0:
        raise ValueError(f"the Grease Pencil object {obj.name!r} has no strokes on its visible layers at this frame")
    if projection == "FRONT":
        return project_front(positions, radii, offsets)
    if projection != "CAMERA":
        raise ValueError(f"unknown projection {projection!r}; use 'FRONT' or 'CAMERA'")
    cam = scene.camera if scene is not None else None
    if cam is None or cam.type != "CAMERA":
        raise ValueError("the scene has no active camera; add one or use the front view projection")
    render = scene.render
    res = (max(1, int(render.resolution_x * render.resolution_percentage / 100)),
           max(1, int(render.resolution_y * render.resolution_percentage / 100)))
    cd = cam.data
    return project_camera(positions, radii, offsets, np.array(cam.matrix_world.inverted(), dtype=np.float64),
                          orthographic=(cd.type == "ORTHO"), ortho_scale=float(cd.ortho_scale), fov_rad=float(cd.angle),
                          resolution=res, shift=(float(cd.shift_x), float(cd.shift_y)))


def stroke_hash(doc: dict) -> str:
    """sha256 of the stroke JSON in canonical form (sorted keys, no spaces): the sketch's identity."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()
