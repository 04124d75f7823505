"""S3D for Blender: the add-on (standard library and numpy only, never torch).

Turns a Grease Pencil face sketch (or a sketch / mask image) into a coloured 3D head mesh through the
S3D backend, which runs as a separate process in its own Python environment (docs/design.md
section 6). Installed as a Blender 4.3+ extension (``blender_manifest.toml``) or enabled from a folder
(``bl_info`` below). Modules that need ``bpy`` are imported only in :func:`register`, so the pure
modules (stroke projection, HTTP client, process lifecycle, environment set-up) import without Blender.

Layout, one folder per role:

* ``ui/``: panel, operators, properties, preferences (all ``bpy``).
* ``scene/``: Blender scene data: stroke capture and projection, the sketch object and its guide,
  the head importer, mesh steps, the live preview.
* ``transport/``: the backend: HTTP client, process lifecycle, environment set-up, job runner, job
  folders, PNG bytes (no ``bpy``).
* ``tasks.py``: the one background-task helper (worker thread, cancel event, typed events, a main-thread
  timer that follows it) used by every operation that must not block Blender.
* ``generation.py``: Generate / Variations / Regenerate as plain functions; ``batch.py``: the headless
  batch entry point (``blender -b -P blender_addon/batch.py``).
"""

bl_info = {
    "name": "S3D Sketch to Head",
    "author": "S3D for Blender contributors",
    "version": (0, 1, 0),
    "blender": (4, 3, 0),
    "location": "3D View > Sidebar > S3D",
    "description": "Turn a Grease Pencil face sketch into a coloured 3D head mesh",
    "category": "Add Mesh",
}

#: registered in this order, unregistered in reverse
_MODULES = ("ui.properties", "ui.preferences", "ui.operators", "scene.live_preview_blender", "ui.panel")


def _modules():
    import importlib

    return [importlib.import_module(f"{__name__}.{name}") for name in _MODULES]


def register():
    """Register properties, preferences, operators and the panel."""
    for mod in _modules():
        mod.register()


def unregister():
    """Cancel jobs, stop every backend process this session started, unregister everything."""
    from . import generation
    from .transport import backend_process

    generation.stop_async()
    backend_process.stop_all()
    for mod in reversed(_modules()):
        mod.unregister()
