"""The 3D View sidebar panel, tab "S3D": input, seed, quality, Generate/Cancel, progress, device, errors."""
from __future__ import annotations

import bpy

from .preferences import backend_python_problem, get_preferences


def _wrapped(layout, text: str, icon: str = "NONE", width: int = 48) -> None:
    """Show a long message over several label lines."""
    lines = []
    for para in text.splitlines() or [""]:
        while len(para) > width:
            cut = para.rfind(" ", 0, width)
            cut = cut if cut > 0 else width
            lines.append(para[:cut])
            para = para[cut:].lstrip()
        lines.append(para)
    col = layout.column(align=True)
    for i, line in enumerate(lines[:12]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1")


def mask_classes(subject: str) -> tuple[str, ...]:
    """The mask classes the panel lists for ``subject`` (``HUMAN`` | ``CAT``), background left out."""
    from ..scene.label_set import names_for

    return names_for(subject.lower())[1:]


def device_text(device: str, reason: str = "") -> str:
    """The panel's device line: "Device: CPU (auto: CPU because ...)" / "Device: GPU (CUDA ...)"."""
    name = "CPU" if device == "cpu" else "GPU" if device.startswith("cuda") else device
    return f"Device: {name}" + (f" ({reason})" if reason else "")


class S3D_PT_main(bpy.types.Panel):
    """Turn a Grease Pencil drawing or a sketch image into a 3D head"""

    bl_label = "Sketch to Head"
    bl_idname = "S3D_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "S3D"

    def draw(self, context):
        layout = self.layout
        s = context.scene.s3d
        status = context.window_manager.s3d_status

        prefs = get_preferences(context)
        if status.env_running:
            box = layout.box()
            box.label(text="Creating the backend environment", icon="CONSOLE")
            box.progress(factor=status.env_progress, type="BAR", text=status.env_stage or "Working")
        elif (problem := backend_python_problem(prefs)) is not None:
            box = layout.box()
            _wrapped(box, problem, icon="INFO")
            box.operator("s3d.create_backend_env", icon="CONSOLE")
            if status.env_error:
                _wrapped(box, status.env_error, icon="ERROR")

        box = layout.box()
        row = box.row(align=True)
        row.prop(s, "subject", text="Subject")
        box.prop(s, "source", text="Input")
        if s.source == "GREASE_PENCIL":
            box.prop(s, "gp_object", text="Drawing")
            box.prop(s, "projection", text="Projection")
            box.operator("s3d.new_sketch", icon="GREASEPENCIL")
        elif s.source == "IMAGE":
            box.prop(s, "image_path", text="Sketch image")
        else:
            box.label(text="Mask image:")
            box.template_ID(s, "mask_image", open="image.open")
            _wrapped(box, "Classes: " + ", ".join(mask_classes(s.subject)), icon="INFO")

        col = layout.column(align=True)
        row = col.row(align=True)
        row.prop(s, "seed", text="Seed")
        # Blender has no dice icon: a cube is the closest die in its icon set
        row.operator("s3d.random_seed", text="", icon="MESH_CUBE")
        col.prop(s, "resolution", text="Quality")
        col.prop(s, "views", text="Colour views")
        col.prop(s, "no_frame", text="Keep my framing")
        col.prop(s, "symmetric", text="Symmetric")
        if s.subject == "HUMAN":  # the colour picks name human classes; cats have none
            box = layout.box()
            box.label(text="Colours (shading kept)")
            for group in ("hair", "skin", "eyes", "lips"):
                row = box.row(align=True)
                row.prop(s, f"pick_{group}", text=group.capitalize())
                sub = row.row(align=True)
                sub.enabled = getattr(s, f"pick_{group}")
                sub.prop(s, f"{group}_color", text="")
        col = layout.column(align=True)
        col.prop(s, "max_faces", text="Target faces")
        col.prop(s, "quad_remesh", text="Quad remesh")
        row = col.row(align=True)
        row.prop(s, "texture", text="Bake texture")
        sub = row.row(align=True)
        sub.enabled = s.texture
        sub.prop(s, "texture_size", text="")

        if status.running:
            layout.operator("s3d.cancel", icon="CANCEL")
            layout.progress(factor=status.progress, type="BAR", text=status.stage or "Working")
        else:
            layout.operator("s3d.generate", icon="PLAY")
            row = layout.row(align=True)
            row.operator("s3d.variations", icon="MOD_ARRAY")
            row.prop(s, "variations", text="Count")
            layout.operator("s3d.regenerate_from_mask", icon="BRUSH_DATA")
        if s.source == "GREASE_PENCIL":
            box = layout.box()
            box.prop(s, "live_preview", text="Live preview", icon="VIEW_CAMERA")
            if s.live_preview and status.preview_stage:
                _wrapped(box, status.preview_stage, icon="ERROR" if "failed" in status.preview_stage else "INFO")

        if status.device:  # information, not a problem: a head takes seconds on a CPU
            _wrapped(layout, device_text(status.device, status.device_reason), icon="INFO")
        if status.last_error:
            _wrapped(layout.box(), status.last_error, icon="ERROR")
        if status.last_warning:
            box = layout.box()
            for line in status.last_warning.splitlines():
                _wrapped(box, line, icon="ERROR")

        row = layout.row(align=True)
        row.operator("s3d.check_backend", icon="PLUGIN")
        row.operator("s3d.stop_backend", icon="QUIT", text="Stop")


CLASSES = (S3D_PT_main,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
