"""Per-class logit offsets fitted on held-out SynHead heads: a bias calibration of a segmentation output.

Both networks are trained with the small face parts weighted x3 in the cross-entropy
(:data:`training.losses.SMALL_CLASSES`). A weighted cross-entropy moves the optimal logits of a class up by
the log of its weight (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, section 4), so
the argmax paints those parts too wide. The generator's default correction is one offset, -tau * log 3,
shared by all of them. Here one offset per class *group* (a left/right pair shares one, so mirrored faces
stay mirrored) is fitted by coordinate descent on the label mIoU of a split that neither training nor the
test split uses (``s3d-data synth --seed 5000 ...``: fresh seeds), so that the test numbers stay honest.

Only pixels whose decision an offset can change are kept: with every offset in ``[-m, m]``, a pixel whose
best score leads the second best by more than ``2 m`` keeps its label, so it is counted once into a
fixed confusion matrix. That makes each trial of the search cost a fraction of a full evaluation.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from backend.labels import LABEL_NAMES
from training.metrics import segmentation_scores

#: Class groups that get one offset each: the classes the recipes weight x3, left/right pairs together.
OFFSET_GROUPS: dict[str, tuple[str, ...]] = {
    "eye_g": ("eye_g",), "eyes": ("l_eye", "r_eye"), "brows": ("l_brow", "r_brow"),
    "mouth": ("mouth",), "lips": ("u_lip", "l_lip"),
}


class OffsetSearchData:
    """Accumulates per-pixel class scores and true labels for :func:`fit_logit_offsets`.

    Scores are logits or log-probabilities (any additive-invariant score whose argmax is the label).
    Pixels whose top score leads the runner-up by more than ``2 * max_offset`` go into a fixed confusion
    matrix; the others are stored (float32 scores, int64 labels) to be re-decided under each trial.

    Raises:
        ValueError: ``max_offset`` not positive; scores and labels of mismatched shapes.
    """

    def __init__(self, num_classes: int, max_offset: float):
        if not max_offset > 0:
            raise ValueError(f"max_offset must be > 0, got {max_offset}")
        self.num_classes = num_classes
        self.max_offset = float(max_offset)
        self.fixed = np.zeros((num_classes, num_classes), np.int64)
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Add ``scores (K, H, W)`` float and the true ``labels (H, W)`` int of one image."""
        scores = np.asarray(scores, np.float32)
        labels = np.asarray(labels).astype(np.int64)
        k = self.num_classes
        if scores.ndim != 3 or scores.shape[0] != k or scores.shape[1:] != labels.shape:
            raise ValueError(f"scores must be ({k}, H, W) with labels (H, W), got {scores.shape} and {labels.shape}")
        flat = scores.reshape(k, -1).T
        top2 = np.partition(flat, k - 2, axis=1)[:, k - 2:]
        settled = top2[:, 1] - top2[:, 0] > 2.0 * self.max_offset
        pred = flat[settled].argmax(1)
        self.fixed += np.bincount(labels.reshape(-1)[settled] * k + pred, minlength=k * k).reshape(k, k)
        self._scores.append(flat[~settled].copy())
        self._labels.append(labels.reshape(-1)[~settled])

    @property
    def open_pixels(self) -> int:
        """How many pixels are re-decided per trial."""
        return int(sum(len(x) for x in self._labels))

    def confusion(self, offsets: np.ndarray) -> np.ndarray:
        """``(K, K)`` int64 confusion matrix (rows truth) with ``offsets (K,)`` added to every score.

        Raises:
            ValueError: an offset outside ``[-max_offset, max_offset]`` (the settled pixels assume it).
        """
        offsets = np.asarray(offsets, np.float32)
        if np.abs(offsets).max(initial=0.0) > self.max_offset + 1e-6:
            raise ValueError(f"offsets must lie in [-{self.max_offset}, {self.max_offset}], got {offsets}")
        k = self.num_classes
        conf = self.fixed.copy()
        for s, t in zip(self._scores, self._labels):
            if len(t):
                conf += np.bincount(t * k + (s + offsets).argmax(1), minlength=k * k).reshape(k, k)
        return conf


def fit_logit_offsets(data: OffsetSearchData, groups: dict[str, tuple[str, ...]] | None = None,
                      step: float = 0.25, passes: int = 3) -> dict[str, Any]:
    """Coordinate descent over one offset per group on the grid ``-m, -m + step, ..., m`` (m = the data's
    ``max_offset``), maximising the mIoU of :func:`training.metrics.segmentation_scores`; a tie keeps
    the smaller offset. Stops after ``passes`` sweeps or a sweep that changes nothing.

    Returns ``{"semantic_logit_offsets": {label name: offset} (non-zero ones only), "group_offsets",
    "miou_before", "miou_after", "per_class_iou_before", "per_class_iou_after", "open_pixels"}``.

    Raises:
        ValueError: an unknown label name in ``groups``, or a step that is not positive.
    """
    groups = OFFSET_GROUPS if groups is None else groups
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    for names in groups.values():
        unknown = [n for n in names if n not in LABEL_NAMES]
        if unknown:
            raise ValueError(f"unknown label names {unknown}; known: {LABEL_NAMES}")
    m = data.max_offset
    grid = np.round(np.arange(-m, m + step / 2, step) / step) * step
    grid = grid[np.argsort(np.abs(grid), kind="stable")]  # ties keep the smaller offset
    chosen = {g: 0.0 for g in groups}

    def vector(values: dict[str, float]) -> np.ndarray:
        vec = np.zeros(data.num_classes, np.float32)
        for g, names in groups.items():
            for n in names:
                vec[LABEL_NAMES.index(n)] = values[g]
        return vec

    def miou(values: dict[str, float]) -> float:
        return segmentation_scores(data.confusion(vector(values)))["miou"]

    before = segmentation_scores(data.confusion(vector(chosen)))
    best = before["miou"]
    for _ in range(passes):
        changed = False
        for g in groups:
            for v in grid:
                score = miou({**chosen, g: float(v)})
                if score > best + 1e-12:
                    best, chosen[g], changed = score, float(v), True
        if not changed:
            break
    after = segmentation_scores(data.confusion(vector(chosen)))
    return {"semantic_logit_offsets": {n: chosen[g] for g, names in groups.items() for n in names if chosen[g] != 0.0},
            "group_offsets": chosen, "miou_before": before["miou"], "miou_after": after["miou"],
            "per_class_iou_before": dict(zip(LABEL_NAMES, before["per_class_iou"])),
            "per_class_iou_after": dict(zip(LABEL_NAMES, after["per_class_iou"])),
            "open_pixels": data.open_pixels}


def collect_scores(model, kind: str, data, max_offset: float = 3.0) -> OffsetSearchData:
    """Per-pixel scores of ``model`` on every sample of a SynHead split, as the evaluation decides labels.

    * ``sketch2mask``: :meth:`SketchToMask.label_scores` (mirror averaging as the card says) of each stored
      sketch against its 512 px label map (``s3d-eval``'s clean protocol);
    * ``mask2triplane``: the log of the front semantic render (orthographic, 128 px, z = the posterior mean
      of the ground-truth RGB) against the label map mode-pooled to 128 px (``s3d-eval``'s label
      consistency). The offsets act on the logits of each 3D point before volume rendering
      (:meth:`Mask2Triplane.query`), so on the composited probabilities they are an approximation:
      ``s3d-eval`` measures the effect exactly.

    Offsets already on the model are switched off for the collection.

    Raises:
        ValueError: an unknown ``kind``.
    """
    import torch

    from backend.labels import NUM_CLASSES

    if kind not in ("sketch2mask", "mask2triplane"):
        raise ValueError(f"kind must be sketch2mask or mask2triplane, got {kind!r}")
    model.semantic_logit_offsets = None
    out = OffsetSearchData(NUM_CLASSES, max_offset)
    with torch.no_grad():
        if kind == "sketch2mask":
            for i in range(len(data)):
                item = data.sketch_item(i)
                x = torch.from_numpy(np.ascontiguousarray(item["sketch"], np.float32))[None, None]
                out.add(model.label_scores(x)[0].numpy(), item["mask"])
            return out
        from backend.models.renderer import VolumeRenderer, orthographic_camera
        from training.datasets import mode_pool
        from training.geometry_eval import posterior_planes

        cfg = model.cfg
        renderer = VolumeRenderer(cfg.get("render_samples", 24), cfg.get("render_importance_samples", 24))
        for s in data.samples:
            ids, _, planes = posterior_planes(model, s)
            probs = renderer.render(lambda x: model.query(planes, x), orthographic_camera("front", 128))["semantic"][0]
            out.add(probs.clamp_min(1e-12).log().numpy(), mode_pool(ids, 128))
    return out


def calibrate(weights_dir, kind: str, data_root, limit: int | None = None, max_offset: float = 3.0,
              step: float = 0.25, name: str | None = None, command: str = "") -> dict[str, Any]:
    """Fit per-group logit offsets of the weights ``<weights_dir>/<name>`` on the SynHead folder
    ``data_root`` (its non-test samples, at most ``limit``) and write them into the card's
    ``inference.semantic_logit_offsets`` (replacing earlier offsets; the tensors and their sha256 do not
    change), with the fit's record in ``inference.calibration``. Returns that record.

    Raises:
        ValueError: the folder holds heads the weights were trained on (seeds inside the card's
            ``data.seed_min .. seed_max``): offsets must be fitted on heads the network never saw.
        training.datasets.DataError / backend.weights.WeightsError: unreadable data or weights.
    """

    from backend.models.loading import DEFAULT_NAMES, load_model
    from backend.weights import write_card
    from training.datasets import SynHead

    name = name or DEFAULT_NAMES[kind]
    model, card = load_model(kind, weights_dir, "cpu", name)
    data = SynHead(data_root, "train", limit=limit)
    seeds = [s.seed for s in data.samples]
    lo, hi = card.get("data", {}).get("seed_min"), card.get("data", {}).get("seed_max")
    if lo is not None and hi is not None and any(lo <= s <= hi for s in seeds):
        raise ValueError(f"{data_root} holds training heads of these weights (seeds {lo}..{hi}); fit the offsets on "
                         f"fresh heads, e.g. `s3d-data synth --out VAL --num 200 --seed {hi + 1000}`")
    res = fit_logit_offsets(collect_scores(model, kind, data, max_offset), step=step)
    record = {"method": "per-group logit offsets by coordinate descent on the label mIoU of held-out heads "
                        "(training/calibration.py)",
              "data": str(data_root), "count": len(seeds), "seed_min": min(seeds), "seed_max": max(seeds),
              "max_offset": max_offset, "step": step, "group_offsets": res["group_offsets"],
              "miou_before": round(res["miou_before"], 4), "miou_after": round(res["miou_after"], 4),
              "command": command}
    inference = {k: v for k, v in card.get("inference", {}).items()
                 if k not in ("semantic_logit_offsets", "semantic_logit_adjustment_tau", "note", "calibration")}
    if res["semantic_logit_offsets"]:
        inference["semantic_logit_offsets"] = res["semantic_logit_offsets"]
    inference["calibration"] = record
    card["inference"] = inference
    write_card(card, name, weights_dir)
    return record
