"""Training losses of the two networks.

* mask -> tri-plane (pix2pix3D / PAiC-3D with 3D data): occupancy BCE on SynHead points, colour L1 and
  semantic cross-entropy near the surface, 2.5D render losses (RGB L1, silhouette L1, depth L1,
  semantic NLL), and the KL term of the conditional-VAE appearance code (Kingma & Welling 2014, eq. 10).
* sketch -> mask (S3D section 3.3): L = L_SV + L_CE + L_Dice.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from backend.labels import CELEBAMASK_HQ, LabelSet


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent dimensions, averaged over the batch.

    ``mu, logvar (B, D)`` -> scalar (nats).
    """
    return (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Multi-class soft Dice loss (Milletari et al., V-Net 2016) ``1 - mean_k 2|P_k T_k| / (|P_k| + |T_k|)``.

    ``logits (B, K, H, W)``, ``target (B, H, W)`` long ids. Classes absent from both prediction and
    target contribute ~0 loss thanks to ``eps`` smoothing (per class, summed over the batch).
    """
    k = logits.shape[1]
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, k).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    return 1.0 - ((2.0 * inter + eps) / (denom + eps)).mean()


def style_vector_loss(style: torch.Tensor, target_ws: torch.Tensor) -> torch.Tensor:
    """S3D's L_SV: MSE between the U-Net bottleneck style ``(B, nw, w_dim)`` and the geometry w+ of the
    trained mask encoder on the ground-truth mask (same shape, no gradient)."""
    return F.mse_loss(style, target_ws.detach())


#: Face-part classes that cover few pixels (eye_g, eyes, brows, mouth, lips): ``small_class_weights`` boosts them.
SMALL_CLASSES: tuple[int, ...] = (3, 4, 5, 6, 7, 10, 11, 12)

#: Label-set name -> the names of its small classes, the ones the recipes weight up (``small_class_weight``)
#: and draw extra rays from (``small_class_rays``). Humans: :data:`SMALL_CLASSES` by name. Cats (seg2cat):
#: eyes, mouth (nose pad, philtrum, mouth line) and whiskers (the whisker pads), each about 1-3 % of a
#: SynCat front view, against face and ear.
SMALL_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "celebamask-hq-19": ("eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip"),
    "seg2cat": ("mouth", "eyes", "whiskers"),
}


def small_classes(labels: LabelSet = CELEBAMASK_HQ) -> tuple[int, ...]:
    """The ids of ``labels``' small classes (:data:`SMALL_CLASS_NAMES`), ascending; :data:`SMALL_CLASSES` for
    the human set.

    Raises:
        KeyError: a label set without an entry in :data:`SMALL_CLASS_NAMES`.
    """
    try:
        names = SMALL_CLASS_NAMES[labels.name]
    except KeyError:
        raise KeyError(f"no small classes are defined for label set {labels.name!r} (training/losses.py "
                       f"SMALL_CLASS_NAMES)") from None
    return tuple(sorted(labels.ids[n] for n in names))


def small_class_weights(num_classes: int, boost: float, device: torch.device | str = "cpu",
                        classes: Sequence[int] = SMALL_CLASSES) -> torch.Tensor | None:
    """Cross-entropy class weights ``(num_classes,)`` float32: ``boost`` for ``classes`` (default the human
    :data:`SMALL_CLASSES`; :func:`small_classes` for another label set), 1 elsewhere; None when
    ``boost == 1`` (plain cross-entropy).

    Raises:
        IndexError: a class id ``>= num_classes``.
    """
    if boost == 1.0:
        return None
    w = torch.ones(num_classes, device=device)
    w[list(classes)] = boost
    return w


def sketch_to_mask_loss(logits: torch.Tensor, style: torch.Tensor, target: torch.Tensor,
                        target_ws: torch.Tensor | None, sv_weight: float = 1.0,
                        class_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """S3D's L = L_SV + L_CE + L_Dice. ``target_ws`` None (or ``sv_weight`` 0) drops L_SV (ablation);
    ``class_weights (K,)`` weights the cross-entropy per class (see :func:`small_class_weights`).

    Returns ``{"loss", "ce", "dice", "sv"}`` scalars.
    """
    ce = F.cross_entropy(logits, target, weight=class_weights)
    dice = soft_dice_loss(logits, target)
    sv = style_vector_loss(style, target_ws) if target_ws is not None and sv_weight > 0 else logits.new_zeros(())
    return {"loss": ce + dice + sv_weight * sv, "ce": ce, "dice": dice, "sv": sv}


def point_losses(out: dict[str, torch.Tensor], occ: torch.Tensor, label: torch.Tensor, rgb: torch.Tensor,
                 surface: torch.Tensor, occ_weight: torch.Tensor | None = None,
                 class_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """3D supervision on points: ``out`` from ``Mask2Triplane.query`` on ``(B, P)`` points; ``occ (B, P)``
    in {0, 1}; ``label (B, P)`` ids; ``rgb (B, P, 3)`` in [0, 1]; ``surface (B, P)`` 1 near the surface;
    ``occ_weight (B, P)`` optional per-point weight of the occupancy term (0 drops a point: points lying
    exactly on the surface have no meaningful inside/outside label); ``class_weights (K,)`` optional
    per-class weights of the semantic term.

    Occupancy: BCE on the occupancy logit (weighted mean). Colour L1 and semantic CE: near/on-surface
    points only (their targets are those of the nearest surface).
    """
    bce = F.binary_cross_entropy_with_logits(out["occupancy_logit"][..., 0], occ, reduction="none")
    if occ_weight is None:
        occ_loss = bce.mean()
    else:
        occ_loss = (bce * occ_weight).sum() / occ_weight.sum().clamp(min=1.0)
    w = surface / surface.sum().clamp(min=1.0)
    rgb_loss = ((out["rgb"] - rgb).abs().mean(-1) * w).sum()
    sem = F.cross_entropy(out["semantic"].reshape(-1, out["semantic"].shape[-1]), label.reshape(-1),
                          weight=class_weights, reduction="none")
    sem_loss = (sem.view_as(w) * w).sum()
    return {"occ": occ_loss, "point_rgb": rgb_loss, "point_sem": sem_loss}


def render_losses(img: dict[str, torch.Tensor], rgb: torch.Tensor, alpha: torch.Tensor, depth: torch.Tensor,
                  label: torch.Tensor) -> dict[str, torch.Tensor]:
    """2.5D losses on rendered rays (PAiC-3D section 3.3): RGB L1 (both composited on white), silhouette L1,
    depth L1 in metres where the ground truth is covered, semantic NLL of the rendered class
    probabilities. ``img`` from ``VolumeRenderer.render_rays`` on ``(B, M)`` rays; targets ``(B, M, ...)``.
    """
    covered = (alpha > 0.5).float()
    depth_l1 = ((img["depth"] - depth).abs() * covered).sum() / covered.sum().clamp(min=1.0)
    nll = F.nll_loss(torch.log(img["semantic"].clamp(min=1e-6)).reshape(-1, img["semantic"].shape[-1]), label.reshape(-1))
    return {"ray_rgb": (img["rgb"] - rgb).abs().mean(), "ray_alpha": (img["alpha"] - alpha).abs().mean(),
            "ray_depth": depth_l1, "ray_sem": nll}


def depth_interval_loss(pred: torch.Tensor, target: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """L1 between the X-Z plane's depth-interval channels and SynHead's front/back depth interval.

    ``pred (B, 2, R, R)`` (centre, half-thickness; area-resampled to the target size when it differs),
    ``target (B, 2, Rv, Rv)``, ``fg (B, Rv, Rv)`` 1 on the silhouette. The half-thickness is compared
    everywhere (off the silhouette its target is negative), the centre on the silhouette only.
    Normalised box units: 0.01 = 2 mm in the 0.4 m box.
    """
    if pred.shape[-1] != target.shape[-1]:
        pred = F.adaptive_avg_pool2d(pred, target.shape[-1]) if pred.shape[-1] > target.shape[-1] else \
            F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=False)
    centre = ((pred[:, 0] - target[:, 0]).abs() * fg).sum() / fg.sum().clamp(min=1.0)
    half = (pred[:, 1] - target[:, 1]).abs().mean()
    return centre + half
