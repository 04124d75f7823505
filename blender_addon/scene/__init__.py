"""Blender scene data: reading Grease Pencil strokes (``gp_capture``, ``stroke_projection``), the 'New
sketch' object and its guide frame (``sketch_setup``, ``sketch_guide``), importing a job folder as a head
(``importer``, ``label_set``), the optional mesh steps (``mesh_ops``) and the live preview (``live_preview``:
the pure state machine, ``live_preview_blender``: its Blender glue). ``stroke_projection``,
``sketch_guide``, ``label_set`` and ``live_preview`` import without Blender.
"""
