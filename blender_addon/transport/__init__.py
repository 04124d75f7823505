"""Everything between the add-on and the backend process, standard library and numpy only (no ``bpy``, so
worker threads may call it): the HTTP client, the backend process lifecycle, creating the backend's
environment, running jobs, the job folders on disk and the PNG bytes sent as input.
"""
