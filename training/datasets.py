"""Training and evaluation data readers: SynHead manifests (docs/contracts.md section 3) and the published
layouts of CelebAMask-HQ and MM-CelebA-HQ (2D only: images, masks, sketches).

Every reader yields numpy arrays; the training scripts batch them. Resampling conventions:

* masks for the mask encoder are one-hot class fractions at the encoder's resolution (area averaging of
  the 512 px id map, the same as :func:`backend.models.mask2triplane.resample_onehot`);
* masks as targets are id maps, downsampled by taking the most frequent id of each block (mode pooling);
* sketches are float32 in [0, 1], 1 = white paper.

Label sets: a SynHead folder's manifest names its classes (``label_set``: ``celebamask-hq-19`` for
SynHead's humans, ``seg2cat`` for SynCat's cats, docs/syncat.md); :class:`SynHead` reads it with
:func:`backend.labels.label_set` and exposes it as ``labels``, and every class count, palette and mirror
table below comes from it. The 2D readers of published human data sets serve ``celebamask-hq-19``.

Seeds of the test split (the manifest's ``test_seeds`` range and every sample whose ``split`` is
``test``) never reach a training reader: :class:`SynHead` with ``split="train"`` drops them and
:func:`assert_no_test_samples` checks it again.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from backend.colorspace import srgb_to_linear
from backend.labels import CELEBAMASK_HQ, NUM_CLASSES, LabelSet, label_set
from backend.models.renderer import camera_rays
from training.patches import view_patch


class DataError(RuntimeError):
    """A data folder that cannot be read: the message names the file and what is wrong."""


def read_ids(path: str | Path, labels: LabelSet = CELEBAMASK_HQ) -> np.ndarray:
    """Label-id PNG -> ``(H, W)`` uint8 ids of ``labels`` (default the 19 CelebAMask-HQ classes).
    Colour-coded maps in the set's palette are mapped back to ids.

    Raises:
        DataError: unreadable file, an id outside ``0 .. labels.num_classes - 1`` or colours outside the
            palette.
    """
    try:
        im = Image.open(path)
        im.load()
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read label map {path}: {e}") from None
    k = labels.num_classes
    if im.mode in ("L", "P", "I", "I;16"):
        ids = np.asarray(im if im.mode != "P" else im.convert("L"))
        if ids.max() >= k:
            raise DataError(f"label map {path} has id {int(ids.max())} outside 0..{k - 1} ({labels.name})")
        return ids.astype(np.uint8)
    rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(np.int32)
    code = rgb[:, 0] * 65536 + rgb[:, 1] * 256 + rgb[:, 2]
    pal = labels.palette.astype(np.int32)
    pal_code = pal[:, 0] * 65536 + pal[:, 1] * 256 + pal[:, 2]
    lut = {int(c): i for i, c in enumerate(pal_code)}
    try:
        ids = np.array([lut[int(c)] for c in code], dtype=np.uint8)
    except KeyError as e:
        raise DataError(f"label map {path} has colour {e} that is not in the {labels.name} palette") from None
    return ids.reshape(im.size[1], im.size[0])


def read_grey(path: str | Path) -> np.ndarray:
    """Greyscale image -> ``(H, W)`` float32 in [0, 1]."""
    try:
        return np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def read_rgb(path: str | Path) -> np.ndarray:
    """RGB image -> ``(H, W, 3)`` float32 in [0, 1] (values as stored, sRGB-encoded)."""
    try:
        return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def onehot_area(ids: np.ndarray, resolution: int, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Id map ``(H, H)`` -> class fractions ``(num_classes, R, R)`` float32 by area averaging (H % R == 0),
    or by pixel repetition when R is a multiple of H. ``num_classes``: the label set's class count (default
    19, CelebAMask-HQ; a :class:`SynHead` reader passes ``data.labels.num_classes``).

    Raises:
        ValueError: H is neither a multiple nor a divisor of R.
    """
    h = ids.shape[0]
    if resolution > h and resolution % h == 0:
        ids = np.repeat(np.repeat(ids, resolution // h, 0), resolution // h, 1)
        h = resolution
    if h % resolution:
        raise ValueError(f"mask side {h} is not a multiple of {resolution}")
    f = h // resolution
    out = np.zeros((num_classes, resolution, resolution), np.float32)
    blocks = ids.reshape(resolution, f, resolution, f).transpose(0, 2, 1, 3).reshape(resolution, resolution, f * f)
    for c in np.unique(blocks):
        out[c] = (blocks == c).mean(-1)
    return out


def mode_pool(ids: np.ndarray, resolution: int, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Id map ``(H, H)`` -> ``(R, R)`` uint8, the most frequent id of each block (H % R == 0)."""
    if ids.shape[0] == resolution:
        return ids.astype(np.uint8)
    return onehot_area(ids, resolution, num_classes).argmax(0).astype(np.uint8)


def resize_grey(img: np.ndarray, resolution: int) -> np.ndarray:
    """``(H, W)`` float32 -> ``(R, R)`` float32, area averaging when shrinking."""
    if img.shape == (resolution, resolution):
        return img
    import cv2

    interp = cv2.INTER_AREA if img.shape[0] > resolution else cv2.INTER_LINEAR
    return cv2.resize(img, (resolution, resolution), interpolation=interp)


@dataclass
class Sample:
    """One SynHead manifest entry with absolute paths resolved against the data folder."""

    root: Path
    entry: dict[str, Any]

    def path(self, key: str) -> Path:
        """Absolute path of the manifest entry's file ``key`` (e.g. ``"mask"``); KeyError when the entry lacks it."""
        return self.root / self.entry[key]

    @property
    def seed(self) -> int:
        """The head's SynHead seed (-1 when the manifest has none)."""
        return int(self.entry.get("seed", -1))


#: Manifest keys whose absence means an older SynHead: the value such a folder was made with. Folders read
#: together must agree on each (their seeds are split alike and their points mean the same).
MANIFEST_DEFAULTS: dict[str, Any] = {"test_seeds": [0, 199], "points_labels": "all-surfaces",
                                     "points_occupancy": "parts"}


def data_roots(root: str | Path | Sequence[str | Path]) -> list[Path]:
    """The folders of a ``--data`` value: one path, several joined with ``os.pathsep`` (``A:B`` on Linux and
    macOS, as in PYTHONPATH), or a sequence of paths."""
    if isinstance(root, (str, Path)):
        parts = [root] if isinstance(root, Path) else [r for r in str(root).split(os.pathsep) if r]
    else:
        parts = list(root)
    if not parts:
        raise DataError("no data folder given: pass --data DIR (several: DIR1" + os.pathsep + "DIR2)")
    return [Path(r) for r in parts]


class SynHead:
    """Reader of one or several SynHead folders (``DIR/manifest.json``; docs/contracts.md section 3).

    Several folders (for example a first data set and more heads generated later with other seeds) read as
    one: their samples in the order given. They must agree on the label set, box size, test seeds and the
    source of the 3D points' labels and occupancy (``points_labels``, ``points_occupancy``), and no seed may
    occur twice.

    Args:
        root: the data folder, or several (:func:`data_roots`).
        split: ``"train"`` (never returns a test-split sample), ``"test"`` or ``"all"``.
        limit: keep at most this many samples (in manifest order) after the split filter.

    Raises:
        DataError: no manifest, an unknown label set or box size, no sample in the split, or folders that
            disagree (on the label set too) or share seeds.
    """

    def __init__(self, root: str | Path | Sequence[str | Path], split: str = "train", limit: int | None = None):
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be train, test or all, not {split!r}")
        self.roots = data_roots(root)
        self.root = self.roots[0]
        manifests = [self._read_manifest(r) for r in self.roots]
        self.manifest = manifests[0]
        names = sorted({m.get("label_set", CELEBAMASK_HQ.name) for m in manifests})
        if len(names) > 1:
            raise DataError(f"the data folders disagree on label_set ({', '.join(names)}): one run trains one "
                            f"subject's networks")
        #: The folders' label set (:class:`backend.labels.LabelSet`): class count, names, palette, mirror ids.
        self.labels: LabelSet = label_set(names[0])
        for key, default in MANIFEST_DEFAULTS.items():
            values = {json.dumps(m.get(key, default)) for m in manifests}
            if len(values) > 1:
                raise DataError(f"the data folders disagree on {key} ({', '.join(sorted(values))}): "
                                f"train on folders made the same way, or upgrade the older one (s3d-data relabel / "
                                f"fill-cavities)")
        lo, hi = self.manifest_value("test_seeds")
        self.test_seeds = (int(lo), int(hi))
        samples, seen = [], {}
        for r, man in zip(self.roots, manifests):
            for e in man.get("samples", []):
                seed = int(e.get("seed", -1))
                if seed in seen:
                    raise DataError(f"seed {seed} is in both {seen[seed]} and {r}: the same head twice")
                seen[seed] = r
                is_test = e.get("split") == "test" or lo <= seed <= hi
                if split == "all" or (split == "test") == is_test:
                    samples.append(Sample(r, e))
        if limit is not None:
            samples = samples[:limit]
        if not samples:
            raise DataError(f"{', '.join(str(r) for r in self.roots)}: no sample of split {split!r}")
        self.split = split
        self.samples = samples
        self._versions = sorted({str(m.get("version")) for m in manifests})
        if split == "train":
            assert_no_test_samples(self)

    @staticmethod
    def _read_manifest(root: Path) -> dict[str, Any]:
        man_path = root / "manifest.json"
        if not man_path.is_file():
            raise DataError(f"{man_path} not found: point --data at a folder written by `s3d-data synth`")
        try:
            manifest = json.loads(man_path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{man_path} is not valid JSON ({e}); is the data set still being written?") from None
        try:
            label_set(manifest.get("label_set", CELEBAMASK_HQ.name))
        except KeyError as e:
            raise DataError(f"{man_path}: {e.args[0]}") from None
        from backend.coords import BOX_SIZE_M

        box = float(manifest.get("box_size_m", BOX_SIZE_M))
        if abs(box - BOX_SIZE_M) > 1e-9:
            raise DataError(f"{man_path}: box_size_m {box} differs from backend/coords.py's {BOX_SIZE_M}")
        return manifest

    def __len__(self) -> int:
        return len(self.samples)

    def manifest_value(self, key: str) -> Any:
        """The manifest's ``key``, or its default for manifests written before the key existed
        (:data:`MANIFEST_DEFAULTS`); every folder agrees on it (checked in ``__init__``)."""
        return self.manifest.get(key, MANIFEST_DEFAULTS[key])

    def describe(self) -> dict[str, Any]:
        """What a model card records about the data: version, split, count, seed range, source of the point
        labels (``points_labels``: "visible", or "all-surfaces" for SynHead < 0.3.0 not relabelled) and of their
        occupancy (``points_occupancy``: "cavities-filled" after ``s3d-data fill-cavities``, else "parts")."""
        seeds = [s.seed for s in self.samples]
        out = {"generator": self.manifest.get("generator"), "version": ", ".join(self._versions),
               "points_labels": self.manifest_value("points_labels"),
               "points_occupancy": self.manifest_value("points_occupancy"),
               "root": str(self.root), "split": self.split, "count": len(self.samples),
               "seed_min": min(seeds), "seed_max": max(seeds), "test_seeds": list(self.test_seeds)}
        if len(self.roots) > 1:  # several folders: all of them, and how many samples each gave
            out["roots"] = {str(r): sum(s.root == r for s in self.samples) for r in self.roots}
        return out

    # ---- mask -> tri-plane -------------------------------------------------------------------------
    def mask2triplane_item(self, index: int, rng: np.random.Generator, mask_resolution: int,
                           appearance_resolution: int, num_points: int, near_fraction: float = 0.7,
                           rays_per_view: int = 0, views: Sequence[str] = ("front", "back", "left", "right"),
                           num_ray_views: int = 1, with_interval: bool = False, focus_labels: Sequence[int] = (),
                           focus_fraction: float = 0.0) -> dict[str, np.ndarray]:
        """Arrays for one training example of the mask -> tri-plane network.

        Returns: ``mask (K, Rm, Rm)`` class fractions (K = ``self.labels.num_classes``), ``rgb (3, Ra, Ra)`` float in [0, 1] (input view),
        ``xyz (P, 3)`` float32 normalised box coords, ``occ (P,)`` float32, ``label (P,)`` int64,
        ``point_rgb (P, 3)`` linear float in [0, 1] (SynHead stores sRGB; converted here, because the
        field's colour is linear by contract), ``surface (P,)`` float32 (1 for near/on-surface points);
        with ``rays_per_view > 0`` also ``ray_o, ray_d (V*M, 3)``, ``ray_fwd (V*M, 3)``, ``ray_rgb (V*M, 3)``,
        ``ray_alpha (V*M,)``, ``ray_depth (V*M,)`` metres (0 where empty), ``ray_label (V*M,)``; ray colours
        are linear, composited on white. Of each view's ``M`` rays, half fall on the silhouette and half
        anywhere; with ``focus_fraction`` > 0 that share of the silhouette half is drawn from the pixels of
        ``focus_labels`` instead (small classes such as the eyes cover about 1 % of a head's pixels and
        would otherwise get one or two rays per view).
        """
        s = self.samples[index]
        ids = read_ids(s.path("mask"), self.labels)
        out: dict[str, np.ndarray] = {"mask": onehot_area(ids, mask_resolution, self.labels.num_classes)}
        rgb = read_rgb(s.path("rgb"))
        out["rgb"] = np.transpose(_resize_rgb(rgb, appearance_resolution), (2, 0, 1))
        out.update(self._points(s, rng, num_points, near_fraction))
        if rays_per_view > 0:
            out.update(self._rays(s, rng, rays_per_view, views, num_ray_views, focus_labels, focus_fraction))
        if with_interval:
            out["interval"], out["interval_fg"] = self.depth_interval(index)
        return out

    def depth_interval(self, index: int, background_half_thickness: float = -0.05) -> tuple[np.ndarray, np.ndarray]:
        """The occupied depth interval along Y per front-view pixel, from the front and back depth maps.

        Returns ``interval (2, Rv, Rv)`` float32 = (centre c, half-thickness h) in normalised box units
        (y_front = c - h, y_back = c + h; the front camera looks along +Y from the box face y = -1, the
        back one along -Y with its image mirrored in x, which is undone here) and ``fg (Rv, Rv)`` float32,
        1 where both rays hit. Off the silhouette c = 0 and h = ``background_half_thickness`` (< 0: the
        decoder's interval prior then says "outside" everywhere along the ray).

        Raises:
            DataError: a missing or unreadable front/back depth map.
        """
        s = self.samples[index]
        views = {v.get("name"): v for v in s.entry.get("views", [])}
        try:
            front = np.load(s.root / views["front"]["depth"]).astype(np.float32)
            back = np.load(s.root / views["back"]["depth"]).astype(np.float32)[:, ::-1]
            half = 0.5 * float(views["front"]["camera"]["ortho_size_m"])
        except (KeyError, OSError, ValueError) as e:
            raise DataError(f"sample {s.entry.get('id')}: no readable front/back depth map ({e})") from None
        fg = np.isfinite(front) & np.isfinite(back)
        y_front = np.where(fg, -1.0 + front / half, 0.0)
        y_back = np.where(fg, 1.0 - back / half, 0.0)
        centre = np.where(fg, 0.5 * (y_front + y_back), 0.0)
        half_thickness = np.where(fg, 0.5 * (y_back - y_front), background_half_thickness)
        return np.stack([centre, half_thickness]).astype(np.float32), fg.astype(np.float32)

    def _points(self, s: Sample, rng: np.random.Generator, n: int, near_fraction: float) -> dict[str, np.ndarray]:
        try:
            with np.load(s.path("points")) as z:
                xyz, occ, label, prgb, kind = z["xyz"], z["occ"], z["label"], z["rgb"], z["kind"]
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"cannot read points {s.path('points')}: {e}") from None
        near = np.flatnonzero(kind >= 1)
        far = np.flatnonzero(kind == 0)
        n_near = min(int(round(n * near_fraction)), len(near)) if len(far) else min(n, len(near))
        n_far = n - n_near
        pick = np.concatenate([rng.choice(near, n_near, replace=len(near) < n_near) if n_near else np.zeros(0, int),
                               rng.choice(far, n_far, replace=len(far) < n_far) if n_far and len(far) else np.zeros(0, int)])
        return {"xyz": xyz[pick].astype(np.float32), "occ": occ[pick].astype(np.float32),
                "label": label[pick].astype(np.int64), "point_rgb": srgb_to_linear(prgb[pick].astype(np.float32) / 255.0),
                "surface": (kind[pick] >= 1).astype(np.float32), "on_surface": (kind[pick] == 2).astype(np.float32)}

    def _rays(self, s: Sample, rng: np.random.Generator, m: int, names: Sequence[str], k: int,
              focus_labels: Sequence[int] = (), focus_fraction: float = 0.0) -> dict[str, np.ndarray]:
        available = [v for v in s.entry.get("views", []) if v.get("name") in names]
        if not available:
            raise DataError(f"sample {s.entry.get('id')} has none of the views {list(names)}")
        chosen = [available[i] for i in rng.choice(len(available), min(k, len(available)), replace=False)]
        parts: dict[str, list[np.ndarray]] = {key: [] for key in
                                               ("ray_o", "ray_d", "ray_fwd", "ray_rgb", "ray_alpha", "ray_depth", "ray_label")}
        for v in chosen:
            cam = v["camera"]
            rgb = read_rgb(s.root / v["rgb"])
            res = rgb.shape[0]
            origins, dirs, fwd = camera_rays(cam, res)
            alpha = read_grey(s.root / v["alpha"]) if v.get("alpha") else np.ones(rgb.shape[:2], np.float32)
            depth = np.load(s.root / v["depth"]).astype(np.float32) if v.get("depth") else np.zeros(rgb.shape[:2], np.float32)
            depth = np.where(np.isfinite(depth) & (alpha > 0.5), depth, 0.0)
            label = read_ids(s.root / v["label"], self.labels) if v.get("label") else np.zeros(rgb.shape[:2], np.uint8)
            # half the rays on the silhouette (a share of them on the focus classes), half anywhere
            focus = np.flatnonzero(np.isin(label.reshape(-1), list(focus_labels))) if focus_fraction > 0 else []
            n_focus = min(int(m * focus_fraction), len(focus), m // 2)
            fg = np.flatnonzero(alpha.reshape(-1) > 0.5)
            n_fg = min(m // 2 - n_focus, len(fg))
            pix = np.concatenate([rng.choice(focus, n_focus, replace=False) if n_focus else np.zeros(0, int),
                                  rng.choice(fg, n_fg, replace=False) if n_fg else np.zeros(0, int),
                                  rng.choice(res * res, m - n_focus - n_fg, replace=False)])
            # linear colour (the field's contract), composited on white as the renderer does
            comp = srgb_to_linear(rgb) * alpha[..., None] + (1.0 - alpha[..., None])
            parts["ray_o"].append(origins.numpy()[pix])
            parts["ray_d"].append(dirs.numpy()[pix])
            parts["ray_fwd"].append(np.broadcast_to(fwd.numpy(), (len(pix), 3)))
            parts["ray_rgb"].append(comp.reshape(-1, 3)[pix])
            parts["ray_alpha"].append(alpha.reshape(-1)[pix])
            parts["ray_depth"].append(depth.reshape(-1)[pix])
            parts["ray_label"].append(label.reshape(-1)[pix].astype(np.int64))
        return {key: np.concatenate(val).astype(np.int64 if key == "ray_label" else np.float32)
                for key, val in parts.items()}

    def view_patch(self, index: int, rng: np.random.Generator, size: int, min_scale: float,
                   views: Sequence[str] = ("front", "back", "left", "right")) -> dict[str, np.ndarray]:
        """A random K x K patch of one of the sample's ``views`` (chosen uniformly) and the rays through its
        points, as :func:`training.patches.view_patch` returns them: the real side of the adversarial loss.

        Raises:
            DataError: the sample has none of ``views`` or a view's images are unreadable.
        """
        s = self.samples[index]
        available = [v for v in s.entry.get("views", []) if v.get("name") in views]
        if not available:
            raise DataError(f"sample {s.entry.get('id')} has none of the views {list(views)}")
        v = available[int(rng.integers(len(available)))]
        try:
            rgb = read_rgb(s.root / v["rgb"])
            alpha = read_grey(s.root / v["alpha"]) if v.get("alpha") else np.ones(rgb.shape[:2], np.float32)
            depth = np.load(s.root / v["depth"]).astype(np.float32)
            label = read_ids(s.root / v["label"], self.labels)
        except (KeyError, OSError, ValueError) as e:
            raise DataError(f"sample {s.entry.get('id')}: view {v.get('name')} is unreadable ({e})") from None
        return view_patch(srgb_to_linear(rgb), alpha, depth, label, v["camera"], rng, size, min_scale,
                          self.labels.num_classes)

    # ---- sketch -> mask ----------------------------------------------------------------------------
    def sketch_item(self, index: int) -> dict[str, Any]:
        """Raw arrays for the sketch network: ``sketch (512, 512)`` float [0, 1] (1 = paper), ``mask (512, 512)``
        uint8 ids of :attr:`labels`, ``strokes`` (the stroke JSON document or None), ``style`` (sketch style name), ``rgb_path``
        (the front render ``rgb.png`` as a string, read only when a drawing style needs it, or None) and
        ``seed`` (the head's seed, -1 when unknown)."""
        s = self.samples[index]
        strokes = None
        if s.entry.get("strokes") and s.path("strokes").is_file():
            strokes = json.loads(s.path("strokes").read_text())
        rgb = str(s.path("rgb")) if s.entry.get("rgb") else None
        return {"sketch": read_grey(s.path("sketch")), "mask": read_ids(s.path("mask"), self.labels), "strokes": strokes,
                "style": s.entry.get("sketch_style", "clean"), "rgb_path": rgb, "seed": s.seed}


def assert_no_test_samples(data: SynHead) -> None:
    """Raise :class:`DataError` when a test-split seed reached a training reader."""
    lo, hi = data.test_seeds
    bad = [s.seed for s in data.samples if lo <= s.seed <= hi or s.entry.get("split") == "test"]
    if bad:
        raise DataError(f"test-split seeds {bad[:5]} reached the training reader; refusing to train on them")


def _resize_rgb(rgb: np.ndarray, resolution: int) -> np.ndarray:
    import cv2

    if rgb.shape[0] == resolution:
        return rgb
    return cv2.resize(rgb, (resolution, resolution), interpolation=cv2.INTER_AREA)


# ---- published 2D layouts --------------------------------------------------------------------------

#: CelebAMask-HQ part-annotation file suffixes -> label ids (backend/labels.py order).
CELEBAMASK_PARTS = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth",
                    "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")


class CelebAMaskHQ:
    """Reader of the published CelebAMask-HQ layout (Lee et al., CVPR 2020), 2D only.

    Expects ``DIR/CelebA-HQ-img/<i>.jpg`` and either ``DIR/CelebAMask-HQ-mask-anno/<k>/<i:05d>_<part>.png``
    (the per-part binary annotations, 512 px, combined here in label order) or a folder of id maps
    ``DIR/mask/<i>.png``. Items: ``rgb (H, W, 3)`` float, ``mask (512, 512)`` uint8 ids.

    Raises:
        DataError: the layout is not found.
    """

    #: The label set of the masks (human, 19 classes).
    labels: LabelSet = CELEBAMASK_HQ

    def __init__(self, root: str | Path, limit: int | None = None):
        self.root = Path(root)
        img_dir = self.root / "CelebA-HQ-img"
        if not img_dir.is_dir():
            raise DataError(f"{img_dir} not found: expected the CelebAMask-HQ layout (CelebA-HQ-img/, "
                            "CelebAMask-HQ-mask-anno/ or mask/)")
        self.images = sorted(img_dir.glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else p.stem)[:limit]
        self.anno = self.root / "CelebAMask-HQ-mask-anno"
        self.ids_dir = self.root / "mask"
        if not self.anno.is_dir() and not self.ids_dir.is_dir():
            raise DataError(f"neither {self.anno} nor {self.ids_dir} exists")

    def __len__(self) -> int:
        return len(self.images)

    def mask(self, index: int) -> np.ndarray:
        """Label map, uint8 in the 19-class id set: ``(H, W)`` from ``mask/<stem>.png`` ids when present, else
        ``(512, 512)`` merged from the per-part annotation PNGs (later parts overwrite earlier ones)."""
        stem = self.images[index].stem
        if self.ids_dir.is_dir():
            return read_ids(self.ids_dir / f"{stem}.png")
        i = int(stem)
        folder = self.anno / str(i // 2000)
        ids = np.zeros((512, 512), np.uint8)
        for label, part in enumerate(CELEBAMASK_PARTS, start=1):
            p = folder / f"{i:05d}_{part}.png"
            if p.is_file():
                ids[np.asarray(Image.open(p).convert("L")) > 127] = label
        return ids

    def item(self, index: int) -> dict[str, np.ndarray]:
        """``{"rgb": (H, W, 3) float32 in [0, 1], "mask": uint8 ids as :meth:`mask`}`` for image ``index``."""
        return {"rgb": read_rgb(self.images[index]), "mask": self.mask(index)}


class MMCelebAHQSketches:
    """Reader of MM-CelebA-HQ's sketch + mask layout (Xia et al., TediGAN, CVPR 2021), 2D only.

    Expects ``DIR/sketch/<i>.jpg|png`` with masks ``DIR/mask/<i>.png`` (ids or palette colours). The
    last ``test_fraction`` of the sorted file list is the test split. Items as :meth:`SynHead.sketch_item`
    (no strokes, style ``real``).
    """

    #: The label set of the masks (human, 19 classes).
    labels: LabelSet = CELEBAMASK_HQ

    def __init__(self, root: str | Path, split: str = "train", limit: int | None = None, test_fraction: float = 0.1):
        self.root = Path(root)
        sk = self.root / "sketch"
        if not sk.is_dir() or not (self.root / "mask").is_dir():
            raise DataError(f"expected {sk}/ and {self.root / 'mask'}/ (MM-CelebA-HQ sketch + mask layout)")
        files = sorted([p for p in sk.iterdir() if p.suffix.lower() in (".jpg", ".png")])
        cut = int(round(len(files) * (1.0 - test_fraction)))
        files = files[:cut] if split == "train" else files[cut:] if split == "test" else files
        self.sketches = files[:limit]
        self.split = split
        if not self.sketches:
            raise DataError(f"{sk} holds no sketch of split {split!r}")

    def __len__(self) -> int:
        return len(self.sketches)

    def describe(self) -> dict[str, Any]:
        """What the run reads, for the run's record: generator, root, split, count."""
        return {"generator": "mm-celeba-hq", "root": str(self.root), "split": self.split, "count": len(self)}

    def sketch_item(self, index: int) -> dict[str, Any]:
        """``{"sketch": (512, 512) float32 grey in [0, 1], "mask": (512, 512) uint8 ids, "strokes": None,
        "style": "real"}``."""
        p = self.sketches[index]
        mask = read_ids(self.root / "mask" / f"{p.stem}.png")
        if mask.shape[0] != 512:
            mask = mode_pool(mask, 512)
        return {"sketch": resize_grey(read_grey(p), 512), "mask": mask, "strokes": None, "style": "real"}


def open_sketch_data(root: str | Path, split: str, limit: int | None = None):
    """A SynHead folder (``manifest.json``; or several, :func:`data_roots`) or an MM-CelebA-HQ folder
    (``sketch/`` + ``mask/``)."""
    roots = data_roots(root)
    if len(roots) > 1 or (roots[0] / "manifest.json").is_file():
        return SynHead(roots, split, limit)
    root = roots[0]
    if (root / "sketch").is_dir():
        return MMCelebAHQSketches(root, split, limit)
    raise DataError(f"{root} is neither a SynHead folder (manifest.json) nor MM-CelebA-HQ (sketch/, mask/)")
