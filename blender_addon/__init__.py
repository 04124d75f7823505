"""S3D for Blender: the add-on (standard library and numpy only, never torch)."""
