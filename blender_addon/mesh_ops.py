"""Optional steps on an imported head: a quad remesh with the colours and vertex groups carried over.

:func:`quad_remesh` runs Blender's QuadriFlow (``bpy.ops.object.quadriflow_remesh``) on the head, then
brings the colour attribute ``Col`` and the per-class vertex groups back from a copy of the triangle
mesh with a Data Transfer modifier (interpolated from the nearest face), which it applies; the integer
attribute ``s3d_label`` is rebuilt from the vertex groups (the heaviest group of each vertex). Main
thread only.
"""
from __future__ import annotations

import bpy
import numpy as np

from .label_set import LABEL_NAMES

COLOR_ATTRIBUTE = "Col"
LABEL_ATTRIBUTE = "s3d_label"
_TRANSFER = "S3D transfer"


class QuadRemeshError(RuntimeError):
    """QuadriFlow could not remesh the head (e.g. a mesh that is not manifold); the triangle mesh is kept."""


def _override(context, obj) -> dict:
    return {"active_object": obj, "object": obj, "selected_objects": [obj], "selected_editable_objects": [obj],
            "scene": context.scene, "view_layer": context.view_layer}


def labels_from_vertex_groups(obj) -> np.ndarray:
    """``(N,)`` uint8 class ids: for each vertex the class of its heaviest vertex group (0 when none)."""
    ids = {g.index: LABEL_NAMES.index(g.name) for g in obj.vertex_groups if g.name in LABEL_NAMES}
    out = np.zeros(len(obj.data.vertices), np.uint8)
    for v in obj.data.vertices:
        best, best_w = 0, 0.0
        for g in v.groups:
            if g.weight > best_w and g.group in ids:
                best, best_w = ids[g.group], g.weight
        out[v.index] = best
    return out


def quad_remesh(context, obj, target_faces: int) -> None:
    """Remesh ``obj`` (an imported head) into quads, keeping its colours, vertex groups and material.

    Args:
        context: Blender context (the scene the head is in).
        obj: the head; its mesh is replaced in place (transform, modifiers and properties stay).
        target_faces: the number of quads QuadriFlow aims at (it lands near, not on, it).

    Raises:
        QuadRemeshError: QuadriFlow failed or left no quads; ``obj`` is unchanged then.
    """
    # the copy keeps the triangles, colours and group weights (group names live on the mesh); QuadriFlow
    # rewrites the head's own mesh in place
    src = bpy.data.objects.new(f"{obj.name} (triangles)", obj.data.copy())
    src.matrix_world = obj.matrix_world
    context.scene.collection.objects.link(src)  # the modifier reads the source's evaluated mesh
    try:
        with context.temp_override(**_override(context, obj)):
            try:
                res = bpy.ops.object.quadriflow_remesh(mode="FACES", target_faces=max(4, int(target_faces)),
                                                       use_mesh_symmetry=False, use_preserve_sharp=False,
                                                       use_preserve_boundary=False, preserve_attributes=False,
                                                       smooth_normals=False, seed=0)
            except RuntimeError as e:
                raise QuadRemeshError(f"QuadriFlow failed: {str(e).strip()}") from None
        sizes = np.empty(len(obj.data.polygons), np.int32)
        obj.data.polygons.foreach_get("loop_total", sizes)
        if "FINISHED" not in res or not len(sizes) or (sizes != 4).any():
            raise QuadRemeshError("QuadriFlow left no quad mesh (is the head manifold?); the triangle mesh is kept")
        me = obj.data
        for attr in [a.name for a in me.color_attributes]:
            me.color_attributes.remove(me.color_attributes[attr])
        obj.vertex_groups.clear()
        mod = obj.modifiers.new(_TRANSFER, "DATA_TRANSFER")
        mod.object = src
        mod.use_object_transform = True
        mod.use_vert_data = True
        mod.data_types_verts = {"VGROUP_WEIGHTS", "COLOR_VERTEX"}
        mod.vert_mapping = "POLYINTERP_NEAREST"
        mod.layers_vgroup_select_src, mod.layers_vgroup_select_dst = "ALL", "NAME"
        mod.layers_vcol_vert_select_src, mod.layers_vcol_vert_select_dst = "ALL", "NAME"
        # the transfer is the last modifier but must run first: applying needs it at the top of the stack
        while obj.modifiers[0] != mod:
            with context.temp_override(**_override(context, obj)):
                bpy.ops.object.modifier_move_up(modifier=mod.name)
        with context.temp_override(**_override(context, obj)):
            bpy.ops.object.datalayout_transfer(modifier=mod.name)  # creates the groups and the colour layer
            bpy.ops.object.modifier_apply(modifier=mod.name)
        me = obj.data
        col = me.color_attributes.get(COLOR_ATTRIBUTE)
        if col is not None:
            me.color_attributes.active_color = col
            me.color_attributes.render_color_index = me.color_attributes.active_color_index
        labels = labels_from_vertex_groups(obj)
        lab = me.attributes.get(LABEL_ATTRIBUTE) or me.attributes.new(LABEL_ATTRIBUTE, "INT", "POINT")
        lab.data.foreach_set("value", labels.astype(np.int32))
        if not me.materials:
            for m in src.data.materials:
                me.materials.append(m)
        me.shade_smooth()
    finally:
        src_me = src.data
        bpy.data.objects.remove(src)
        if src_me is not None and src_me.users == 0:
            bpy.data.meshes.remove(src_me)
