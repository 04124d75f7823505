"""SynHead: the synthetic sketch / mask / 3D-head data engine (issue 3, docs/synhead.md).

One module per concept:

* :mod:`.heads`       anny 0.6.2 head model (patched topology, capped neck), random phenotypes, local
                      changes and light expressions, placed in the canonical head frame.
* :mod:`.labels`      CelebAMask-HQ labels of the shared head topology, derived once.
* :mod:`.appearance`  skin / hair / iris / lip / cloth colours.
* :mod:`.hair`        procedural hair as closed geometry (occupancy field -> marching cubes).
* :mod:`.accessories` neck-and-shoulder bust with clothing, eyeglasses.
* :mod:`.render`      embree ray casting: RGB, label, depth, normal, alpha for orthographic views.
* :mod:`.strokes`     clean-style stroke JSON (with stroke groups) from the input-view label/depth maps.
* :mod:`.sketch_styles` clean (rasterised strokes), pencil (XDoG) and rough sketch styles.
* :mod:`.drawing_styles` portrait, hatched, marker and strands (styles of real drawings), the registry of
                      all seven styles by name and the writer's style weights.
* :mod:`.points`      3D supervision points (uniform, near-surface, on-surface).
* :mod:`.writer`      one sample end to end, the manifest, resumable multiprocessing generation.
* :mod:`.preview`     contact sheets.
"""
from __future__ import annotations

#: Version of the generator recorded in every manifest; bump when the output changes.
#: 0.1.0: first data set (/work/data/synhead, 02:00 UTC). 0.2.0: small head turns (scene.py), feature-enhanced line-only pencil style,
#: more hair-flow strokes, brows drawn as one thick stroke in half of the sketches. 0.3.0: labels and colours
#: of the 3D points from the visible surface only (points.py; ``s3d-data relabel`` upgrades older folders).
#: 0.4.0: hidden cavities (mouth, eye sockets, gaps under clothes) inside in the points' occupancy
#: (points.py ``fill_enclosed_cavities``; ``s3d-data fill-cavities`` upgrades 0.3.0 folders to the same files).
#: 0.5.0: the stored sketch also in the four styles of real drawings (drawing_styles.py: portrait through the
#: backend's intake, hatched, marker, strands; weights in ``drawing_styles.STYLES``), which changes the
#: sketches and, through the shared random stream, the 3D points of a seed.
GENERATOR_VERSION = "0.5.0"
#: Seeds 0..199 (inclusive) are the test split and are never used for training.
TEST_SEEDS: tuple[int, int] = (0, 199)


def split_of_seed(seed: int) -> str:
    """``"test"`` for seeds in :data:`TEST_SEEDS` (inclusive range), else ``"train"``."""
    return "test" if TEST_SEEDS[0] <= seed <= TEST_SEEDS[1] else "train"
