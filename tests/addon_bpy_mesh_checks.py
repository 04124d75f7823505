"""Mesh checks of the add-on under the ``bpy`` module, run by tests/test_addon.py in a subprocess.

Usage: python tests/addon_bpy_mesh_checks.py --job JOB_DIR --bad-ply FILE --out REPORT.json

Imports a recorded job folder with ``blender_addon.scene.importer.import_job_folder`` (Blender's PLY importer)
and a broken PLY, then runs the optional mesh steps on the imported head. Writes what it observed into
REPORT.json (arrays into REPORT.npz); the assertions live in the pytest file. Only this script touches bpy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from blender_addon.scene import importer  # noqa: E402


def point_values(me, name: str, kind: str = "value", width: int = 1) -> np.ndarray | None:
    attr = me.attributes.get(name)
    if attr is None:
        return None
    buf = np.empty(len(attr.data) * width, np.float32 if attr.data_type in ("FLOAT", "FLOAT_COLOR", "BYTE_COLOR") else np.int32)
    attr.data.foreach_get(kind, buf)
    return buf.reshape(len(attr.data), width) if width > 1 else buf


def describe(obj) -> tuple[dict, dict]:
    me = obj.data
    sizes = np.empty(len(me.polygons), np.int32)
    me.polygons.foreach_get("loop_total", sizes)
    info = {"name": obj.name, "vertices": len(me.vertices), "faces": len(me.polygons),
            "face_sizes": sorted({int(x) for x in sizes}),
            "color_attributes": [[a.name, a.data_type, a.domain] for a in me.color_attributes],
            "attributes": sorted(a.name for a in me.attributes if not a.name.startswith(".")),
            "vertex_groups": [g.name for g in obj.vertex_groups],
            "uv_layers": [uv.name for uv in me.uv_layers],
            "materials": [m.name for m in me.materials if m is not None]}
    arrays = {}
    col = point_values(me, importer.COLOR_ATTRIBUTE, "color_srgb", 4)
    if col is not None:
        arrays["col"] = np.round(col[:, :3] * 255).astype(np.uint8)
    lab = point_values(me, importer.LABEL_ATTRIBUTE)
    if lab is not None:
        arrays["label"] = lab
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    arrays["co"] = co.reshape(-1, 3)
    return info, arrays


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", required=True)
    ap.add_argument("--bad-ply", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    report: dict = {"bpy_version": bpy.app.version_string}
    arrays: dict = {}
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        ctx = bpy.context
        head = importer.import_job_folder(ctx, args.job, "Recorded head")
        report["head"], a = describe(head)
        arrays.update({f"head_{k}": v for k, v in a.items()})
        report["objects_after_import"] = sorted(o.name for o in bpy.data.objects)
        report["meshes_after_import"] = sorted(m.name for m in bpy.data.meshes)
        try:
            importer.import_job_folder(ctx, Path(args.bad_ply).parent, "Broken")
            report["bad_ply_error"] = None
        except importer.MeshImportError as e:
            report["bad_ply_error"] = str(e)
        report["objects_after_bad"] = sorted(o.name for o in bpy.data.objects)

        from blender_addon.scene import mesh_ops

        engine = ctx.scene.render.engine
        t0 = time.monotonic()
        img = mesh_ops.bake_texture(ctx, head, 1024, folder=args.job)
        me = head.data
        mat = me.materials[0]
        nodes = mat.node_tree.nodes
        base_links = [(l.from_node.type, l.from_socket.name) for l in mat.node_tree.links if l.to_socket.name == "Base Color"]
        report["texture"] = {"seconds": round(time.monotonic() - t0, 2), "uv_layers": [u.name for u in me.uv_layers],
                             "material": mat.name, "image_nodes": [n.image.name for n in nodes if n.type == "TEX_IMAGE" and n.image],
                             "base_colour_from": base_links, "image_size": list(img.size), "packed": bool(img.packed_file),
                             "file": str(Path(args.job) / mesh_ops.TEXTURE_FILE),
                             "file_exists": (Path(args.job) / mesh_ops.TEXTURE_FILE).is_file(),
                             "engine_restored": ctx.scene.render.engine == engine,
                             "shared_material_untouched": [n.type for n in bpy.data.materials[importer.MATERIAL_NAME].node_tree.nodes
                                                           if n.type == "TEX_IMAGE"] == [],
                             "color_attributes": [[a.name, a.data_type, a.domain] for a in me.color_attributes]}
        # the texture at each vertex's UV against the vertex's colour
        px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
        img.pixels.foreach_get(px)
        px = px.reshape(img.size[1], img.size[0], 4)
        uv = np.empty(len(me.loops) * 2, np.float32)
        me.uv_layers[0].data.foreach_get("uv", uv)
        vidx = np.empty(len(me.loops), np.int32)
        me.loops.foreach_get("vertex_index", vidx)
        uv = uv.reshape(-1, 2)
        xy = np.clip((uv * np.array(img.size)).astype(int), 0, np.array(img.size) - 1)
        arrays["texture_at_loops"] = np.round(px[xy[:, 1], xy[:, 0], :3] * 255).astype(np.uint8)
        arrays["texture_loop_vertex"] = vidx
    except Exception:
        report["exception"] = traceback.format_exc()
    Path(args.out).write_text(json.dumps(report, indent=1))
    np.savez(Path(args.out).with_suffix(".npz"), **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
