"""What the artist sees and clicks: the sidebar panel, the operators, the scene / window-manager properties
and the add-on preferences. Every module here needs ``bpy``; the work the operators start lives in the
add-on's ``generation`` module, ``scene/`` and ``transport/``.
"""
