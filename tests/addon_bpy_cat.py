"""The add-on's cat path under the ``bpy`` module, run by tests/test_addon.py in a subprocess.

Usage: python tests/addon_bpy_cat.py --job CAT_JOB_DIR --out REPORT.json

Registers the panel settings (``scene.s3d``) and checks, in real Blender data: New Sketch with Subject = Cat
(the guide strokes drawn), the job request's ``subject`` option and colour picks for cats and humans, a cat
mask image read in the seg2cat palette, and a recorded cat job imported with vertex groups named from its
label set. Writes what it observed into REPORT.json; the assertions live in the pytest file.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy
import numpy as np

from blender_addon import generation
from blender_addon.scene import (
    importer,
    label_set,
    mesh_ops,
    sketch_guide,
    sketch_setup,
)
from blender_addon.ui import panel, properties


def guide_stroke_count(obj) -> int:
    layer = next(lay for lay in obj.data.layers if lay.name == sketch_setup.GUIDE_LAYER_NAME)
    return len(layer.frames[0].drawing.strokes)


def requests(ctx) -> dict:
    """The options sent for a cat and a human mask job, with a hair colour ticked in both."""
    s = ctx.scene.s3d
    s.pick_hair = True
    out = {}
    for subject in ("CAT", "HUMAN"):
        s.subject = subject
        settings = generation.GenerateSettings.from_scene(ctx)
        req = generation.build_request(ctx, settings, mask_ids=np.ones((64, 64), np.uint8), name="m")
        out[subject] = req.options
    return out


def cat_mask_image() -> list[int]:
    """A painted cat mask (seg2cat colours) read back as ids."""
    ids = np.zeros((32, 32), np.uint8)
    ids[8:24, 8:24] = 1
    ids[12:14, 10:14] = 4
    ids[20:22, 14:18] = 3
    rgba = np.concatenate([label_set.CAT_PALETTE[ids] / 255.0, np.ones((32, 32, 1))], -1)[::-1]
    img = bpy.data.images.new("cat mask", 32, 32)
    img.colorspace_settings.name = "Non-Color"
    img.pixels.foreach_set(rgba.astype(np.float32).ravel())
    got = generation.mask_ids_from_image(img, "cat")
    return [int(np.array_equal(got, ids)), int(np.array_equal(generation.mask_ids_from_image(img), ids))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    report: dict = {"bpy_version": bpy.app.version_string}
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        properties.register()
        ctx = bpy.context
        report["subject_items"] = [i.identifier for i in ctx.scene.s3d.bl_rna.properties["subject"].enum_items]
        report["subject_default"] = ctx.scene.s3d.subject
        report["cat_guide_strokes"] = guide_stroke_count(sketch_setup.create_sketch_object(ctx, "Cat", "cat"))
        report["human_guide_strokes"] = guide_stroke_count(sketch_setup.create_sketch_object(ctx, "Human"))
        report["expected_cat_strokes"] = len(sketch_guide.cat_guide_strokes())
        report["expected_human_strokes"] = len(sketch_guide.guide_strokes())
        report["options"] = requests(ctx)
        report["mask_classes"] = {k: list(panel.mask_classes(k)) for k in ("HUMAN", "CAT")}
        report["cat_mask_read"] = cat_mask_image()
        head = importer.import_job_folder(ctx, args.job, "Cat head")
        report["vertex_groups"] = sorted(g.name for g in head.vertex_groups)
        report["label_set"] = head.get("s3d_label_set")
        report["subject"] = head.get("s3d_subject")
        report["labels_back"] = mesh_ops.labels_from_vertex_groups(head).tolist()
        properties.unregister()
    except Exception:  # noqa: BLE001 - reported to the test
        report["exception"] = traceback.format_exc()
    Path(args.out).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
