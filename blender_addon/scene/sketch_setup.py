"""'New sketch': a Grease Pencil object in the front view with a guide frame of the canonical framing.

The object sits at the origin, rotated +90 degrees about X so that its local X-Y plane is the world X-Z
plane: the front input view of the canonical head frame (docs/contracts.md section 1). A locked layer
"S3D Guide" holds the tri-plane box square (0.40 m, the whole input image), the canonical content box
(where the backend's auto-framing puts a drawing's ink: ``backend/canonical_framing.json``, else the
defaults of ``backend/align.py``) and an ellipse inscribed in it as a head outline; the drawing layer
"Lines" is active. Main thread only.
"""
from __future__ import annotations

import math

import bpy
import numpy as np

from .gp_capture import GUIDE_LAYER_NAME, grease_pencil_datablocks
from .sketch_guide import cat_guide_strokes, guide_strokes


def _material(name: str, rgba: tuple[float, float, float, float]):
    mat = bpy.data.materials.get(name)
    if mat is None:
        mat = bpy.data.materials.new(name)
        bpy.data.materials.create_gpencil_data(mat)
    mat.grease_pencil.color = rgba
    return mat


def add_stroke(drawing, points_local: np.ndarray, radius_m: float, material_index: int = 0, cyclic: bool = False) -> None:
    """Append one stroke to a GPv3 drawing; ``points_local`` is ``(K, 3)`` in the object's space (metres)."""
    pts = np.asarray(points_local, dtype=np.float32).reshape(-1, 3)
    drawing.add_strokes([len(pts)])
    stroke = drawing.strokes[len(drawing.strokes) - 1]
    stroke.cyclic = cyclic
    stroke.material_index = material_index
    # strokes[-1].points is a slice of the drawing's point attributes: set them in bulk
    first = int(drawing.curve_offsets[len(drawing.strokes) - 1].value)
    pos = np.empty(len(drawing.attributes["position"].data) * 3, dtype=np.float32)
    drawing.attributes["position"].data.foreach_get("vector", pos)
    pos = pos.reshape(-1, 3)
    pos[first:first + len(pts)] = pts
    drawing.attributes["position"].data.foreach_set("vector", pos.ravel())
    for p in stroke.points:
        p.radius = radius_m


def _front_to_local(xz: np.ndarray) -> np.ndarray:
    """World front-view (x, z) -> the sketch object's local (x, y, 0) (object rotated +90 deg about X)."""
    xz = np.asarray(xz, dtype=np.float64)
    return np.stack([xz[:, 0], xz[:, 1], np.zeros(len(xz))], axis=1)


def create_sketch_object(context, name: str = "S3D Sketch", subject: str = "human"):
    """Create and link the sketch object (guide layer locked, 'Lines' active) and return it; ``subject``
    ``cat`` draws the cat face guide (:func:`sketch_guide.cat_guide_strokes`) instead of the head ellipse."""
    gp = grease_pencil_datablocks().new(name)
    obj = bpy.data.objects.new(name, gp)
    obj.rotation_euler = (math.pi / 2.0, 0.0, 0.0)
    (context.collection or context.scene.collection).objects.link(obj)
    gp.materials.append(_material("S3D Ink", (0.0, 0.0, 0.0, 1.0)))
    gp.materials.append(_material("S3D Guide", (0.35, 0.55, 0.9, 0.6)))
    guide = gp.layers.new(GUIDE_LAYER_NAME)
    frame = guide.frames.new(context.scene.frame_current)
    for xz, radius in cat_guide_strokes() if subject == "cat" else guide_strokes():
        add_stroke(frame.drawing, _front_to_local(xz), radius, 1, cyclic=len(xz) > 2)
    guide.lock = True
    lines = gp.layers.new("Lines")
    lines.frames.new(context.scene.frame_current)
    gp.layers.active = lines
    for o in context.view_layer.objects:
        if o is not None:
            o.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    return obj


def _enum_name(owner, prop: str, value: str) -> str:
    try:
        return owner.bl_rna.properties[prop].enum_items[value].name
    except (KeyError, AttributeError):
        return value


def set_drawing_plane(context) -> list[str]:
    """Make strokes land on the front (X-Z) plane through the sketch's origin, whatever way the view turns:
    the scene's Grease Pencil drawing plane "Front (X-Z)" and stroke placement "Origin".

    These are scene tool settings that other Grease Pencil work shares, so only what differs is changed
    and each change is returned as a sentence ("drawing plane View -> Front (X-Z)") for the operator's
    report; an empty list means nothing changed.
    """
    ts = context.scene.tool_settings
    changes = []
    for owner, prop, value, label in ((getattr(ts, "gpencil_sculpt", None), "lock_axis", "AXIS_Y", "drawing plane"),
                                      (ts, "gpencil_stroke_placement_view3d", "ORIGIN", "stroke placement")):
        if owner is None or not hasattr(owner, prop):
            continue
        old = getattr(owner, prop)
        if old != value:
            setattr(owner, prop, value)
            changes.append(f"scene {label} {_enum_name(owner, prop, old)} -> {_enum_name(owner, prop, value)}")
    return changes


def frame_front_view(context) -> str | None:
    """Turn the active 3D view (the one whose sidebar ran the operator) to the front orthographic view of
    the new sketch; other views keep their angle. Returns what changed (a sentence) or None (no active
    3D view, e.g. in background mode or when called from another editor)."""
    area = getattr(context, "area", None)
    if area is None or area.type != "VIEW_3D" or bpy.app.background:
        return None
    region = next((r for r in area.regions if r.type == "WINDOW"), None)
    if region is None:
        return None
    with context.temp_override(area=area, region=region):
        bpy.ops.view3d.view_axis(type="FRONT")
        bpy.ops.view3d.view_selected()
    return "this 3D view turned to front orthographic"
