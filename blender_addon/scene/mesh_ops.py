"""Optional steps on an imported head: a quad remesh with the colours and vertex groups carried over,
and a colour texture baked from the colour attribute.

:func:`quad_remesh` runs Blender's QuadriFlow (``bpy.ops.object.quadriflow_remesh``) on the head, then
brings the colour attribute ``Col`` and the per-class vertex groups back from a copy of the triangle
mesh with a Data Transfer modifier (interpolated from the nearest face), which it applies; the integer
attribute ``s3d_label`` is rebuilt from the vertex groups (the heaviest group of each vertex).
:func:`bake_texture` unwraps the head with Smart UV Project and bakes ``Col`` into an image with Cycles
(chosen over xatlas in the backend: 1.4 s against 8.4 s for xatlas's unwrap alone on a 60,000-face head,
docs/performance.md). Main thread only.
"""
from __future__ import annotations

import bpy
import numpy as np

from .importer import vertex_colour_material
from .label_set import names_for_label_set

COLOR_ATTRIBUTE = "Col"
LABEL_ATTRIBUTE = "s3d_label"
_TRANSFER = "S3D transfer"


class QuadRemeshError(RuntimeError):
    """QuadriFlow could not remesh the head (e.g. a mesh that is not manifold); the triangle mesh is kept."""


def _override(context, obj) -> dict:
    return {"active_object": obj, "object": obj, "selected_objects": [obj], "selected_editable_objects": [obj],
            "scene": context.scene, "view_layer": context.view_layer}


def labels_from_vertex_groups(obj) -> np.ndarray:
    """``(N,)`` uint8 class ids: for each vertex the class of its heaviest vertex group (0 when none), in the
    label set the head was imported with (``obj["s3d_label_set"]``, human when absent)."""
    names = names_for_label_set(obj.get("s3d_label_set"))
    ids = {g.index: names.index(g.name) for g in obj.vertex_groups if g.name in names}
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


TEXTURE_FILE = "texture.png"


class TextureBakeError(RuntimeError):
    """The colour texture could not be baked (no Cycles, an unwritable folder); the head keeps its colours."""


def _texture_material(obj, image):
    """A material of this head's own: Image Texture (UV map ``UVMap``) -> Principled BSDF base colour.

    The shared "S3D Vertex Colour" material stays as it is for the other heads; the colour attribute
    stays on the mesh (an Attribute node, unlinked, names it for whoever switches back)."""
    mat = vertex_colour_material().copy()
    mat.name = f"{obj.name} texture"
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = "UVMap"
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.location = (bsdf.location.x - 320, bsdf.location.y + 40)
    uv.location = (tex.location.x - 220, tex.location.y)
    attr = next((n for n in nodes if n.type == "ATTRIBUTE"), None)
    if attr is not None:
        attr.location = (tex.location.x, tex.location.y - 320)
    links.new(uv.outputs["UV"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat, tex, attr


def bake_texture(context, obj, size: int = 1024, folder=None):
    """Unwrap the head (Smart UV Project) and bake its colour attribute into an image texture.

    The mesh gets the UV map ``UVMap``; an image ``<name> texture`` (``size`` x ``size`` px, sRGB,
    packed into the .blend and, when ``folder`` is given, saved there as ``texture.png``) is baked with
    Cycles (emission of the ``Col`` attribute, 1 sample, 8 px margin); the head's material becomes its own
    copy of "S3D Vertex Colour" with the image as base colour. The colour attribute stays. The scene's
    render settings are put back afterwards.

    Args:
        context: Blender context. obj: the imported head (object mode). size: texture side in pixels
            (256..8192). folder: where ``texture.png`` is written (the job folder), or None.

    Returns:
        the image.

    Raises:
        TextureBakeError: Cycles is missing or the bake failed; ``obj`` keeps its material then (a UV
            map may have been added).
        ValueError: ``size`` outside 256..8192.
    """
    if not 256 <= int(size) <= 8192:
        raise ValueError(f"texture size must be 256..8192 px, not {size}")
    me = obj.data
    if me.color_attributes.get(COLOR_ATTRIBUTE) is None:
        raise TextureBakeError("the head has no colour attribute to bake")
    vl = context.view_layer
    prev_active, prev_selected = vl.objects.active, [o for o in vl.objects if o is not None and o.select_get()]
    for o in prev_selected:
        o.select_set(False)
    vl.objects.active = obj
    obj.select_set(True)
    ones = np.ones(len(me.polygons), bool)
    me.polygons.foreach_set("select", ones)
    me.vertices.foreach_set("select", np.ones(len(me.vertices), bool))
    scene = context.scene
    saved = {"engine": scene.render.engine}
    image = None
    try:
        bpy.ops.object.mode_set(mode="EDIT")
        try:
            bpy.ops.uv.smart_project(angle_limit=1.15, island_margin=0.002, area_weight=0.0, correct_aspect=True,
                                     scale_to_bounds=False)
        finally:
            bpy.ops.object.mode_set(mode="OBJECT")
        image = bpy.data.images.new(f"{obj.name} texture", int(size), int(size), alpha=False)
        mat, tex, attr = _texture_material(obj, image)
        nt = mat.node_tree
        out = next(n for n in nt.nodes if n.type == "OUTPUT_MATERIAL")
        bsdf = next(n for n in nt.nodes if n.type == "BSDF_PRINCIPLED")
        emit = nt.nodes.new("ShaderNodeEmission")  # bake the colour as it is, without lighting
        nt.links.new(attr.outputs["Color"], emit.inputs["Color"])
        nt.links.new(emit.outputs["Emission"], out.inputs["Surface"])
        nt.nodes.active = tex
        old_materials = list(me.materials)
        me.materials.clear()
        me.materials.append(mat)
        try:
            scene.render.engine = "CYCLES"
        except TypeError:
            raise TextureBakeError("this Blender has no Cycles, which baking needs") from None
        cy = scene.cycles
        saved.update(samples=cy.samples, device=cy.device, margin=scene.render.bake.margin,
                     use_clear=scene.render.bake.use_clear, target=scene.render.bake.target)
        cy.samples, cy.device = 1, "CPU"
        scene.render.bake.margin, scene.render.bake.use_clear, scene.render.bake.target = 8, True, "IMAGE_TEXTURES"
        try:
            bpy.ops.object.bake(type="EMIT")
        except RuntimeError as e:
            me.materials.clear()
            for m in old_materials:
                me.materials.append(m)
            bpy.data.materials.remove(mat)
            raise TextureBakeError(f"baking the texture failed: {str(e).strip()}") from None
        nt.nodes.remove(emit)
        nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
        if folder is not None:
            path = str(bpy.path.abspath(str(folder))).rstrip("/\\") + "/" + TEXTURE_FILE
            image.filepath_raw = path
            image.file_format = "PNG"
            try:
                image.save()
            except RuntimeError as e:
                raise TextureBakeError(f"cannot write {path}: {str(e).strip()}") from None
        image.pack()
        return image
    except (TextureBakeError, RuntimeError) as e:  # RuntimeError: an operator refused (context, mode)
        if image is not None and image.users == 0:
            bpy.data.images.remove(image)
        if isinstance(e, TextureBakeError):
            raise
        raise TextureBakeError(f"baking the texture failed: {str(e).strip()}") from None
    finally:
        scene.render.engine = saved["engine"]
        if "samples" in saved:
            scene.cycles.samples, scene.cycles.device = saved["samples"], saved["device"]
            scene.render.bake.margin, scene.render.bake.use_clear = saved["margin"], saved["use_clear"]
            scene.render.bake.target = saved["target"]
        obj.select_set(False)
        for o in prev_selected:
            try:
                o.select_set(True)
            except (ReferenceError, RuntimeError):  # removed meanwhile
                pass
        try:
            vl.objects.active = prev_active
        except (ReferenceError, RuntimeError):
            vl.objects.active = obj
