"""SynCat: procedural cat heads in SynHead's folder format, labelled with pix2pix3D's seg2cat classes
(issue 40, docs/syncat.md).

* :mod:`.shapes`  the signed-distance composition of a cat head and its marching-cubes mesh.
* :mod:`.paint`   seg2cat vertex labels, fur patterns, eyes, nose, inner ears, mouth line.
* :mod:`.scene`   one scene per seed (a SynHead ``Scene``), placement, 3D feature curves.
* :mod:`.strokes` grouped stroke JSON and the clean / doodle / pencil sketch styles.
* :mod:`.writer`  one sample end to end, the manifest, resumable multiprocessing generation.

Rendering, ray casting, point sampling and file writing are SynHead's code (:mod:`training.synhead`).
"""
from __future__ import annotations

#: Generator name and version recorded in every sample and manifest; bump the version when the output changes.
GENERATOR = "syncat"
GENERATOR_VERSION = "0.2.0"
