"""Import a job folder (docs/contracts.md section 6) as a Blender mesh object.

What the artist gets: a mesh object named after the sketch, at the 3D cursor, in metres (the head
frame is Blender's: Z up, face towards -Y), read by Blender's own PLY importer; a colour attribute
``Col`` (float colours, point domain: the PLY's sRGB bytes, exact when read back as sRGB) shown by the
material "S3D Vertex Colour" (Attribute node -> Principled BSDF base colour); an integer point attribute ``s3d_label``; one vertex group per semantic
class present (CelebAMask-HQ names: skin, nose, hair, ...); custom properties ``s3d_seed``,
``s3d_weights_sha256``, ``s3d_sketch_sha256``, ``s3d_device``, ``s3d_job_folder``, ``s3d_mask_image``; and
the mask as a packed image the user may paint on ("Regenerate from edited mask"). Main thread only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import bpy
import numpy as np

from .label_set import LABEL_NAMES, names_for_label_set

MATERIAL_NAME = "S3D Vertex Colour"
COLOR_ATTRIBUTE = "Col"
LABEL_ATTRIBUTE = "s3d_label"


def vertex_colour_material():
    """The shared material that shows the ``Col`` attribute (created once, repaired if edited away)."""
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is None:
        mat = bpy.data.materials.new(MATERIAL_NAME)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        out = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None) or nodes.new("ShaderNodeOutputMaterial")
        links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    attr = next((n for n in nodes if n.type == "ATTRIBUTE"), None)
    if attr is None:
        attr = nodes.new("ShaderNodeAttribute")
        attr.location = (bsdf.location.x - 300, bsdf.location.y)
    attr.attribute_type = "GEOMETRY"
    attr.attribute_name = COLOR_ATTRIBUTE
    links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    if "Roughness" in bsdf.inputs:
        bsdf.inputs["Roughness"].default_value = 0.6
    return mat


def _weights_checksums(result: dict) -> dict[str, str]:
    """``{"name": sha256}`` from result.json, whatever nesting the backend uses."""
    raw = result.get("weights_sha256") or result.get("weights") or {}
    out: dict[str, str] = {}
    if isinstance(raw, dict):
        for name, v in raw.items():
            if isinstance(v, str):
                out[str(name)] = v
            elif isinstance(v, dict) and isinstance(v.get("sha256"), str):
                out[str(name)] = v["sha256"]
    return out


def result_warnings(result: dict) -> list[str]:
    """The messages of result.json's ``warnings`` (``[{"code", "message"}]``: the backend's mask
    plausibility check), in order, without duplicates; ``[]`` when there are none or the entry is malformed."""
    raw = result.get("warnings") if isinstance(result, dict) else None
    out: list[str] = []
    for w in raw if isinstance(raw, list) else []:
        msg = w.get("message") or w.get("code") if isinstance(w, dict) else None
        if isinstance(msg, str) and msg and msg not in out:
            out.append(msg)
    return out


class MeshImportError(ValueError):
    """``mesh.ply`` cannot be read by Blender's PLY importer; the message names the file and the reason."""


def read_ply_mesh(path: str | os.PathLike, name: str):
    """Read a job's ``mesh.ply`` with Blender's own PLY importer (``bpy.ops.wm.ply_import``).

    It keeps what the backend writes (docs/contracts.md section 6): positions in metres as stored (no axis
    change), the ``red green blue`` bytes as the colour attribute ``Col`` (point domain, the same sRGB
    values) and the ``label`` property as a point attribute, which becomes the integer attribute
    ``s3d_label`` here. The importer's temporary object is removed; only the mesh data-block stays.

    Returns:
        ``(mesh, labels)``: the new mesh (named ``name``, smooth shaded) and the ``(N,)`` uint8 class ids,
        or None when the file has no ``label`` property.

    Raises:
        MeshImportError: the importer failed or found no mesh in the file.
    """
    before = set(bpy.data.objects)
    wanted = {"filepath": str(path), "import_colors": "SRGB", "import_attributes": True, "merge_verts": False,
              "use_scene_unit": False, "global_scale": 1.0, "forward_axis": "Y", "up_axis": "Z"}
    known = {p.identifier for p in bpy.ops.wm.ply_import.get_rna_type().properties}
    try:  # only the options this Blender's importer has (import_attributes is recent)
        bpy.ops.wm.ply_import(**{k: v for k, v in wanted.items() if k in known})
    except RuntimeError as e:  # the importer's error report
        raise MeshImportError(f"cannot read {path}: {str(e).strip()}") from None
    new = [o for o in bpy.data.objects if o not in before]
    me = new[0].data if new and new[0].type == "MESH" else None
    for o in new:
        bpy.data.objects.remove(o)
    if me is None or len(me.vertices) == 0:
        if me is not None:
            bpy.data.meshes.remove(me)
        raise MeshImportError(f"cannot read {path}: no mesh in the file")
    me.name = name
    labels = None
    raw = me.attributes.get("label")
    if raw is not None and raw.domain == "POINT":
        vals = np.empty(len(me.vertices), np.float32 if raw.data_type == "FLOAT" else np.int32)
        raw.data.foreach_get("value", vals)
        labels = np.clip(np.round(vals), 0, 255).astype(np.uint8)
        me.attributes.remove(raw)
        me.attributes.new(LABEL_ATTRIBUTE, "INT", "POINT").data.foreach_set("value", labels.astype(np.int32))
    col = me.color_attributes.get(COLOR_ATTRIBUTE)
    if col is not None:
        me.color_attributes.active_color = col
        me.color_attributes.render_color_index = me.color_attributes.active_color_index
    if len(me.polygons):
        me.shade_smooth()
    return me, labels


def set_vertex_groups(obj, labels: np.ndarray | None, class_names: tuple[str, ...] = LABEL_NAMES) -> list[str]:
    """One vertex group (weight 1) per class present in ``labels``, named from ``class_names`` (the job's
    label set, id order); returns the group names."""
    obj.vertex_groups.clear()
    if labels is None:
        return []
    names = []
    for cid in np.unique(labels):
        if cid == 0 or cid >= len(class_names):  # background is not a part of the head
            continue
        vg = obj.vertex_groups.new(name=class_names[int(cid)])
        vg.add(np.flatnonzero(labels == cid).tolist(), 1.0, "REPLACE")
        names.append(vg.name)
    return names


def load_mask_image(folder: Path, name: str):
    """Load ``mask_color.png`` (else ``mask.png``) as a packed image named ``<name> mask``, or None."""
    for fname in ("mask_color.png", "mask.png"):
        path = folder / fname
        if path.is_file():
            img = bpy.data.images.load(str(path), check_existing=False)
            img.name = f"{name} mask"
            img.pack()
            img["s3d_kind"] = "color" if fname == "mask_color.png" else "ids"
            return img
    return None


def import_job_folder(context, folder: str | os.PathLike, name: str, *, sketch_sha256: str = "",
                      offset: tuple[float, float, float] = (0.0, 0.0, 0.0), replace_object=None):
    """Create (or replace the mesh of) an object from a job folder.

    Args:
        context: Blender context (scene, collection, 3D cursor).
        folder: job folder with ``mesh.ply`` and ``result.json`` (mask images optional).
        name: object name (the sketch's name).
        sketch_sha256: hash of the input as sent.
        offset: added to the 3D cursor location (metres), e.g. for variations side by side.
        replace_object: an existing object whose mesh, vertex groups and properties are replaced
            (its transform and modifiers stay); None creates a new object at the 3D cursor.

    Returns:
        the object.

    Raises:
        FileNotFoundError: no ``mesh.ply`` in the folder. MeshImportError: unreadable mesh.
    """
    folder = Path(folder)
    ply_path = folder / "mesh.ply"
    if not ply_path.is_file():
        raise FileNotFoundError(f"the job folder {folder} has no mesh.ply")
    result_path = folder / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    me, labels = read_ply_mesh(ply_path, name)
    me.materials.append(vertex_colour_material())
    if replace_object is not None:
        obj = replace_object
        old = obj.data
        obj.data = me
        if old is not None and old.users == 0:
            bpy.data.meshes.remove(old)
    else:
        obj = bpy.data.objects.new(name, me)
        (context.collection or context.scene.collection).objects.link(obj)
        obj.location = tuple(float(c) + float(o) for c, o in zip(context.scene.cursor.location, offset))
    # the class names of the job's label set (result.json's label_set; older results are human)
    obj["s3d_label_set"] = str(result.get("label_set", "celebamask-hq-19"))
    obj["s3d_subject"] = str(result.get("subject", "human"))
    set_vertex_groups(obj, labels, names_for_label_set(result.get("label_set")))
    obj["s3d_seed"] = int(result.get("seed", -1))
    obj["s3d_weights_sha256"] = _weights_checksums(result)
    obj["s3d_sketch_sha256"] = sketch_sha256 or str(result.get("sketch_sha256", ""))
    obj["s3d_device"] = str(result.get("device", ""))
    obj["s3d_job_folder"] = str(folder)
    # one message a line: the mask looked implausible (operators and the panel show them)
    obj["s3d_warnings"] = "\n".join(result_warnings(result))
    old_mask = bpy.data.images.get(str(obj.get("s3d_mask_image", ""))) if replace_object is not None else None
    img = load_mask_image(folder, name)
    if img is not None:
        obj["s3d_mask_image"] = img.name
        if old_mask is not None and old_mask.users == 0 and old_mask != img:
            bpy.data.images.remove(old_mask)
    return obj
