"""Panel settings (``scene.s3d``, saved with the .blend) and run-time status (``window_manager.s3d_status``).

The status lives on the window manager so that progress, device and errors are never saved into files.
"""
from __future__ import annotations

import bpy

from ..scene.gp_capture import is_grease_pencil

QUALITY_ITEMS = [
    ("64", "Draft (64)", "Marching-cubes grid of 64^3: fastest"),
    ("128", "Normal (128)", "Grid of 128^3"),
    ("192", "Fine (192)", "Grid of 192^3"),
    ("256", "High (256)", "Grid of 256^3: slow on CPU"),
]


def _poll_grease_pencil(self, obj):
    return is_grease_pencil(obj)


def _live_preview_changed(self, context):
    from ..scene import live_preview_blender

    live_preview_blender.toggle_changed(self, context)


class S3DSceneSettings(bpy.types.PropertyGroup):
    """Per-scene Generate settings (``scene.s3d``): the input, seed, mesh quality and colour views."""

    source: bpy.props.EnumProperty(
        name="Input", default="GREASE_PENCIL",
        items=[("GREASE_PENCIL", "Grease Pencil", "The active (or chosen) Grease Pencil drawing", "GREASEPENCIL", 0),
               ("IMAGE", "Sketch image", "A sketch image file: dark lines on white", "IMAGE_DATA", 1),
               ("MASK", "Mask image", ("A face-parsing mask (the subject's colours or label ids: CelebAMask-HQ "
                                       "for humans, seg2cat for cats)"), "MOD_MASK", 2)])
    subject: bpy.props.EnumProperty(
        name="Subject", default="HUMAN",
        items=[("HUMAN", "Human", "A human head (the human networks; CelebAMask-HQ mask colours)", "USER", 0),
               ("CAT", "Cat", ("A cat head (the cat networks, once trained; seg2cat mask colours). New Sketch "
                               "draws a cat guide; colour picks are for humans only"), "OUTLINER_OB_ARMATURE", 1)])
    gp_object: bpy.props.PointerProperty(
        name="Drawing", type=bpy.types.Object, poll=_poll_grease_pencil,
        description="Grease Pencil object to send; empty: the active object")
    projection: bpy.props.EnumProperty(
        name="Projection", default="FRONT",
        items=[("FRONT", "Front view", "Front orthographic view of the canonical frame (draw in the front view)"),
               ("CAMERA", "Active camera", "Project the strokes through the scene's active camera")])
    image_path: bpy.props.StringProperty(name="Sketch image", subtype="FILE_PATH", default="")
    mask_image: bpy.props.PointerProperty(name="Mask", type=bpy.types.Image)
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0, max=2**31 - 1,
                                description="Every random choice comes from this seed: same sketch + seed + weights = same head")
    resolution: bpy.props.EnumProperty(name="Quality", items=QUALITY_ITEMS, default="128")
    views: bpy.props.IntProperty(name="Colour views", default=6, min=4, max=12,
                                 description="Rendered views blended into the vertex colours")
    no_frame: bpy.props.BoolProperty(name="Keep my framing", default=False,
                                     description="Do not auto-frame the drawing onto the canonical framing")
    pick_hair: bpy.props.BoolProperty(name="Hair colour", default=False, description="Use the picked hair colour")
    hair_color: bpy.props.FloatVectorProperty(name="Hair", subtype="COLOR_GAMMA", size=3, min=0.0, max=1.0,
                                              default=(0.35, 0.22, 0.14))
    pick_skin: bpy.props.BoolProperty(name="Skin colour", default=False, description="Use the picked skin colour")
    skin_color: bpy.props.FloatVectorProperty(name="Skin", subtype="COLOR_GAMMA", size=3, min=0.0, max=1.0,
                                              default=(0.85, 0.64, 0.52))
    pick_eyes: bpy.props.BoolProperty(name="Eye colour", default=False, description="Use the picked eye colour")
    eyes_color: bpy.props.FloatVectorProperty(name="Eyes", subtype="COLOR_GAMMA", size=3, min=0.0, max=1.0,
                                              default=(0.25, 0.4, 0.55))
    pick_lips: bpy.props.BoolProperty(name="Lip colour", default=False, description="Use the picked lip colour")
    lips_color: bpy.props.FloatVectorProperty(name="Lips", subtype="COLOR_GAMMA", size=3, min=0.0, max=1.0,
                                              default=(0.7, 0.35, 0.35))
    symmetric: bpy.props.BoolProperty(
        name="Symmetric", default=False,
        description="Make the head mirror-symmetric about its vertical mid-plane (left and right parts keep their "
                    "names)")
    max_faces: bpy.props.IntProperty(
        name="Target faces", default=0, min=0, max=5_000_000, soft_max=500_000,
        description="Decimate the head to about this many faces (1,000 or more; quadric decimation in the backend). "
                    "0: the backend's default, at most 200,000")
    quad_remesh: bpy.props.BoolProperty(
        name="Quad remesh", default=False,
        description="Turn the imported head into quads with QuadriFlow (aiming at the target faces, else half the "
                    "triangles); colours and vertex groups are carried over. Takes seconds to a minute")
    texture: bpy.props.BoolProperty(
        name="Bake texture", default=False,
        description="Unwrap the head (Smart UV Project) and bake its colours into an image texture (texture.png in "
                    "the job folder, packed); the colour attribute stays")
    texture_size: bpy.props.EnumProperty(
        name="Texture size", default="1024",
        items=[("1024", "1024 px", "1024 x 1024"), ("2048", "2048 px", "2048 x 2048"), ("4096", "4096 px", "4096 x 4096")])
    live_preview: bpy.props.BoolProperty(
        name="Live preview", default=False, update=_live_preview_changed,
        description="While you draw, a draft head (grid 64, 4 small colour views) follows the drawing about a "
                    "second after the last stroke, in one object 'S3D Preview' (no undo steps). Off removes it")
    variations: bpy.props.IntProperty(name="Variations", default=4, min=2, max=12,
                                      description="How many seeds to generate side by side")


class S3DStatus(bpy.types.PropertyGroup):
    """Progress of the running job (``window_manager.s3d_status``), drawn by the panel; not saved."""

    running: bpy.props.BoolProperty(default=False)
    progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0)
    stage: bpy.props.StringProperty(default="")
    device: bpy.props.StringProperty(default="")
    device_reason: bpy.props.StringProperty(default="")
    last_error: bpy.props.StringProperty(default="")
    #: the backend's warnings about the last imported mask(s), one a line
    last_warning: bpy.props.StringProperty(default="")
    #: the live preview's state in words ("Live preview: drafting", ...)
    preview_stage: bpy.props.StringProperty(default="")
    env_running: bpy.props.BoolProperty(default=False)
    env_progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0)
    env_stage: bpy.props.StringProperty(default="")
    env_line: bpy.props.StringProperty(default="")
    env_error: bpy.props.StringProperty(default="")


CLASSES = (S3DSceneSettings, S3DStatus)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.s3d = bpy.props.PointerProperty(type=S3DSceneSettings)
    bpy.types.WindowManager.s3d_status = bpy.props.PointerProperty(type=S3DStatus)


def unregister() -> None:
    del bpy.types.WindowManager.s3d_status
    del bpy.types.Scene.s3d
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
