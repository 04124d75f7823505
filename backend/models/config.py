"""Architecture profiles of the two networks, as plain data (stored verbatim in the model cards).

Two profiles share one code path (docs/design.md section 3):

* ``paper``: the published sizes (pix2pix3D seg2face / S3D): 512 px masks and sketches, w+ = 7 geometry
  + 7 appearance ws of 512, planes 3 x 32 x 256^2, decoder MLP 64 wide, 48 + 48 ray samples. For GPU
  training on real data.
* ``lite``: small enough to train on a 2-core CPU in about an hour per network and to run fast on CPU at
  inference: masks encoded at 128 px, w+ = 4 + 4 ws of 128, planes 3 x 24 x 128^2, U-Net at 128 px
  internally (512 px input accepted and resampled).

Both networks serve one label set (backend/labels.py): the config's ``num_classes`` and optional
``label_set`` (a manifest name such as ``"seg2cat"``). A config without ``label_set`` serves
``celebamask-hq-19``, so the profiles below, and every config stored in an existing model card, are the
human 19-class networks unchanged; :func:`config_labels` reads the set of a config.

``PROFILES[name]["mask2triplane"]`` configures :class:`backend.models.mask2triplane.Mask2Triplane`,
``PROFILES[name]["sketch2mask"]`` configures :class:`backend.models.sketch2mask.SketchToMask`. The
sketch network's style head must match the mask encoder's geometry w+ (``num_ws_geometry`` x ``w_dim``).
"""
from __future__ import annotations

import copy
from typing import Any

from backend.labels import NUM_CLASSES, LabelSet, label_set

#: The label set of a config without a ``label_set`` key (every profile and every earlier model card).
DEFAULT_LABEL_SET = "celebamask-hq-19"


class LabelSetError(ValueError):
    """A network, config, checkpoint or data folder that serve different label sets (code
    ``label_set_mismatch``); the message names both sets."""

    code = "label_set_mismatch"

_LITE_M2T: dict[str, Any] = {
    "num_classes": NUM_CLASSES,
    "input_resolution": 512,          # mask resolution the pipeline hands in (any square size is accepted)
    "mask_resolution": 128,           # the one-hot mask is area-resampled to this before encoding
    "encoder_channels": [16, 32, 64, 96, 128],  # mask U-Net levels at 128, 64, 32, 16, 8 px
    "pixel_feature_channels": 32,     # pixel-aligned features handed to the synthesis
    "z_dim": 64,
    "w_dim": 128,
    "num_ws_geometry": 4,             # one geometry w and one appearance w per synthesis layer
    "num_ws_appearance": 4,
    "plane_resolution": 128,
    "plane_channels": 24,
    "synthesis_channels": 32,
    "synthesis_resolution": 64,       # modulated 3x3 convs run here, then add onto the 128^2 input features
    "depth_code_channels": 16,
    "decoder_hidden": 64,
    "decoder_xyz": True,              # the decoder also sees the point's coordinates
    "depth_interval_slope": 100.0,    # X-Z plane channels 0, 1 = depth interval (centre, half-thickness); 0 = off
    "decoder_relative_depth": True,   # the decoder sees (y - c) / h: front or back of the head
    "density_scale": 20.0,            # sigma = density_scale * softplus(occupancy logit), per box half-size
    "appearance_resolution": 64,      # training-only cVAE appearance encoder input size
    "appearance_channels": [16, 32, 64, 64],
    "render_samples": 24,
    "render_importance_samples": 24,
}

_PAPER_M2T: dict[str, Any] = {
    "num_classes": NUM_CLASSES,
    "input_resolution": 512,
    "mask_resolution": 512,
    "encoder_channels": [32, 64, 128, 256, 512, 512, 512, 512],  # 512 -> 4 px, as pix2pix3D's encoder
    "pixel_feature_channels": 64,
    "z_dim": 512,
    "w_dim": 512,
    "num_ws_geometry": 7,
    "num_ws_appearance": 7,
    "plane_resolution": 256,
    "plane_channels": 32,
    "synthesis_channels": 96,
    "synthesis_resolution": 256,
    "depth_code_channels": 32,
    "decoder_hidden": 64,
    "depth_interval_slope": 100.0,
    "decoder_relative_depth": True,
    "density_scale": 20.0,
    "appearance_resolution": 128,
    "appearance_channels": [32, 64, 128, 256, 256],
    "render_samples": 48,
    "render_importance_samples": 48,
}

_LITE_S2M: dict[str, Any] = {
    "num_classes": NUM_CLASSES,
    "input_resolution": 512,
    "internal_resolution": 128,       # sketches are resampled to this; logits go back to the input size
    "channels": [16, 24, 32, 48, 64, 96, 128, 128],  # stem + seven encoder levels (128 -> 1 px)
    "num_ws_geometry": _LITE_M2T["num_ws_geometry"],
    "w_dim": _LITE_M2T["w_dim"],
}

_PAPER_S2M: dict[str, Any] = {
    "num_classes": NUM_CLASSES,
    "input_resolution": 512,
    "internal_resolution": 512,
    "channels": [32, 64, 128, 256, 512, 512, 512, 512],  # stem + seven encoder levels (512 -> 4 px)
    "num_ws_geometry": _PAPER_M2T["num_ws_geometry"],
    "w_dim": _PAPER_M2T["w_dim"],
}

#: Profile name -> {"mask2triplane": config, "sketch2mask": config}. Plain JSON-serialisable dicts.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "lite": {"mask2triplane": _LITE_M2T, "sketch2mask": _LITE_S2M},
    "paper": {"mask2triplane": _PAPER_M2T, "sketch2mask": _PAPER_S2M},
}


def get_config(profile: str, kind: str) -> dict[str, Any]:
    """A deep copy of ``PROFILES[profile][kind]`` (``kind`` is ``mask2triplane`` or ``sketch2mask``).

    Raises:
        ValueError: unknown profile or kind (the message lists the known ones).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    if kind not in PROFILES[profile]:
        raise ValueError(f"unknown network kind {kind!r}; choose one of {sorted(PROFILES[profile])}")
    return copy.deepcopy(PROFILES[profile][kind])


def config_labels(cfg: dict[str, Any]) -> LabelSet:
    """The :class:`backend.labels.LabelSet` a network config serves: ``cfg["label_set"]``, or
    :data:`DEFAULT_LABEL_SET` when the key is absent.

    Raises:
        LabelSetError: an unknown label-set name, or ``cfg["num_classes"]`` (when present) differs from the
            set's class count.
    """
    name = cfg.get("label_set", DEFAULT_LABEL_SET)
    try:
        labels = label_set(name)
    except KeyError as e:
        raise LabelSetError(f"config: {e.args[0]}") from None
    k = cfg.get("num_classes", labels.num_classes)
    if k != labels.num_classes:
        raise LabelSetError(f"config num_classes is {k}, but label set {labels.name!r} has "
                         f"{labels.num_classes} classes")
    return labels


def for_label_set(cfg: dict[str, Any], labels: LabelSet) -> dict[str, Any]:
    """``cfg`` (changed in place and returned) set up to serve ``labels``: ``num_classes`` from the set and,
    for any set but :data:`DEFAULT_LABEL_SET`, ``label_set`` = its name (a human config stays exactly as
    the profile wrote it, so human runs and cards are unchanged).

    Raises:
        LabelSetError: ``cfg`` already names another label set.
    """
    named = cfg.get("label_set", DEFAULT_LABEL_SET)
    if named != labels.name:
        if "label_set" in cfg:
            raise LabelSetError(f"the config names label set {named!r}, the data is "
                             f"{labels.name!r}")
    cfg["num_classes"] = labels.num_classes
    if labels.name != DEFAULT_LABEL_SET:
        cfg["label_set"] = labels.name
    return cfg
