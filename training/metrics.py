"""Evaluation metrics: geometry (Chamfer distance, F-score), segmentation (mIoU, mAP), images (PSNR, SSIM).

* Chamfer distance: the mean of the two mean nearest-neighbour distances between point sets sampled on
  the predicted and the ground-truth surfaces, in millimetres. F-score at a threshold t (Knapitsch et
  al., Tanks and Temples 2017; used by PAiC-3D): harmonic mean of precision (predicted points within t of
  the truth) and recall (true points within t of the prediction).
* mIoU: per-class intersection over union from a confusion matrix accumulated over the whole set, mean
  over the classes that occur (in truth or prediction). mAP as S3D reports it for segmentation: the mean
  over those classes of the per-class pixel precision TP / (TP + FP) (a class never predicted counts 0).
* PSNR for images in [0, 1]; SSIM with an 11-tap Gaussian window, sigma 1.5 (Wang et al., TIP 2004),
  averaged over channels.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree


def chamfer_fscore(pred: np.ndarray, gt: np.ndarray, thresholds_m: tuple[float, ...] = (0.002, 0.005),
                   gt_region: np.ndarray | None = None) -> dict[str, float]:
    """Geometry metrics between surface samples ``pred (N, 3)`` and ``gt (M, 3)`` in metres.

    Returns ``{"chamfer_mm", "fscore_2mm", "fscore_5mm", "precision_5mm", "recall_5mm"}`` (keys follow
    ``thresholds_m``). An empty prediction gives an infinite Chamfer distance and F-scores of 0.

    ``gt_region`` (bool ``(M,)``, optional) restricts both directions to one region of the truth (for
    instance the face without the hair): recall and the truth-to-prediction distance over the truth
    samples in the region, precision and the prediction-to-truth distance over the predicted samples
    whose nearest truth sample lies in it (a region-restricted Chamfer distance / F-score).

    Raises:
        ValueError: an empty truth, a ``gt_region`` of the wrong length or with no sample in it.
    """
    pred = np.asarray(pred, np.float64).reshape(-1, 3)
    gt = np.asarray(gt, np.float64).reshape(-1, 3)
    if len(gt) == 0:
        raise ValueError("ground-truth point set is empty")
    if gt_region is not None:
        gt_region = np.asarray(gt_region, bool).reshape(-1)
        if gt_region.shape != (len(gt),) or not gt_region.any():
            raise ValueError(f"gt_region must be a bool array of {len(gt)} entries with at least one True, "
                             f"got shape {gt_region.shape} with {int(gt_region.sum())} True")
    out: dict[str, float] = {}
    if len(pred):
        d_pred, nearest = cKDTree(gt).query(pred, workers=1)
        d_gt = cKDTree(pred).query(gt, workers=1)[0]
        if gt_region is not None:
            d_pred, d_gt = d_pred[gt_region[nearest]], d_gt[gt_region]
    if len(pred) == 0 or len(d_pred) == 0:  # nothing predicted (near the region)
        out["chamfer_mm"] = float("inf")
        for t in thresholds_m:
            mm = int(round(t * 1000))
            out.update({f"fscore_{mm}mm": 0.0, f"precision_{mm}mm": 0.0, f"recall_{mm}mm": 0.0})
        return out
    out["chamfer_mm"] = float((d_pred.mean() + d_gt.mean()) / 2.0 * 1000.0)
    for t in thresholds_m:
        p, r = float((d_pred < t).mean()), float((d_gt < t).mean())
        mm = int(round(t * 1000))
        out[f"fscore_{mm}mm"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
        out[f"precision_{mm}mm"] = p
        out[f"recall_{mm}mm"] = r
    return out


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = truth, columns = prediction, of two id maps of equal shape."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction and truth differ in size: {pred.shape} vs {gt.shape}")
    return np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(conf: np.ndarray) -> dict[str, object]:
    """mIoU, mAP and per-class IoU / precision / recall from a confusion matrix (rows truth, columns prediction).

    Classes that occur neither in truth nor prediction are left out of the means (their entries are None).
    """
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    gt_n, pred_n = conf.sum(1), conf.sum(0)
    union = gt_n + pred_n - tp
    present = union > 0
    iou = np.where(present, tp / np.maximum(union, 1), np.nan)
    prec = np.where(present, tp / np.maximum(pred_n, 1), np.nan)
    rec = np.where(present, tp / np.maximum(gt_n, 1), np.nan)
    return {"miou": float(np.nanmean(iou)) if present.any() else float("nan"),
            "map": float(np.nanmean(prec)) if present.any() else float("nan"),
            "pixel_accuracy": float(tp.sum() / max(conf.sum(), 1)),
            "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
            "per_class_precision": [None if np.isnan(v) else float(v) for v in prec],
            "per_class_recall": [None if np.isnan(v) else float(v) for v in rec]}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] of the same shape."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004) of two ``(H, W)`` or ``(H, W, C)`` images in [0, 1]."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch], b[..., ch]
        f = lambda im: gaussian_filter(im, sigma, truncate=3.5)  # 11-tap window
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        vals.append(m.mean())
    return float(np.mean(vals))
