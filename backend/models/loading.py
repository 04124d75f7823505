"""Build a network from its model card and load its verified weights (backend/weights.py).

``load_mask2triplane(weights_dir, device)`` and ``load_sketch2mask(weights_dir, device)`` read
``<weights_dir>/<name>.json``, check the sha256 of ``<name>.safetensors``, check that the card describes
a network this code can build (kind, label set, box size), build it from the card's ``config`` and load
the tensors strictly, then apply the card's ``inference`` settings (for either network:
``mirror_average``, test-time averaging with the mirrored input, ``semantic_logit_offsets``, per-class
logit offsets, and for the generator ``z_prior``, the Gaussian its seeds are drawn from). Every failure
raises :class:`backend.weights.WeightsError` with a stable code and a
sentence naming the file and what to do.

Label sets: a card's ``label_set`` names the classes its network serves (backend/labels.py:
``celebamask-hq-19`` for the human networks, ``seg2cat`` for cats); its config's ``num_classes`` and
``label_set`` (absent = celebamask-hq-19) must agree with it. The loaders accept the label set the caller
asks for, celebamask-hq-19 by default, so a cat card in the human networks' place is refused.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from backend.labels import LABEL_SETS
from backend.models.card import LABEL_SET, ModelCard
from backend.weights import DEFAULT_WEIGHTS_DIR, WeightsError, load_state_dict

#: Weights names and label set per job subject (the ``subject`` option): human networks are
#: ``<kind>_lite`` (celebamask-hq-19), cat networks ``<kind>_cat_lite`` (seg2cat), both in the weights folder.
SUBJECT_WEIGHTS: dict[str, dict[str, str]] = {
    "human": {"mask2triplane": "mask2triplane_lite", "sketch2mask": "sketch2mask_lite",
              "label_set": "celebamask-hq-19"},
    "cat": {"mask2triplane": "mask2triplane_cat_lite", "sketch2mask": "sketch2mask_cat_lite", "label_set": "seg2cat"},
}
DEFAULT_NAMES = {"mask2triplane": "mask2triplane_lite", "sketch2mask": "sketch2mask_lite"}


def build_model(kind: str, config: dict[str, Any]) -> torch.nn.Module:
    """A fresh (untrained) network of ``kind`` (``mask2triplane`` | ``sketch2mask``) from a config dict."""
    if kind == "mask2triplane":
        from backend.models.mask2triplane import Mask2Triplane

        return Mask2Triplane(config)
    if kind == "sketch2mask":
        from backend.models.sketch2mask import SketchToMask

        return SketchToMask(config)
    raise ValueError(f"unknown network kind {kind!r}; expected 'mask2triplane' or 'sketch2mask'")


def load_model(kind: str, weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR, device: str | torch.device = "cpu",
               name: str | None = None, label_set: str | None = LABEL_SET) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Verify, build and load ``<name>`` (default ``<kind>_lite``) -> ``(model in eval mode on device, card)``.

    ``label_set``: the label set the card must serve (default celebamask-hq-19; None: any known set,
    :meth:`backend.models.card.ModelCard.from_dict`). The network's class count is the card's set's.

    Raises:
        WeightsError: missing/corrupted files (``weights_missing``, ``weights_corrupt``), a card that does
            not fit this code or tensors that do not fit the config (``weights_mismatch``).
    """
    name = name or DEFAULT_NAMES[kind]
    state, card = load_state_dict(name, weights_dir, device="cpu")
    typed = ModelCard.from_dict(card, name, kind, label_set)
    try:
        model = build_model(kind, typed.config)
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError("weights_mismatch", f"model card {name}.json has an unusable config: {e}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise WeightsError("weights_mismatch", f"weights {name}.safetensors do not fit the config in {name}.json: "
                                               f"{' '.join(first)}; retrain or restore both files") from None
    _apply_inference(model, typed.settings, LABEL_SETS[typed.label_set].names, name)
    return model.to(device).eval(), card


def _apply_inference(model: torch.nn.Module, settings, names: tuple[str, ...], name: str) -> None:
    """Set a loaded network's inference settings (:class:`backend.models.card.InferenceSettings`):
    mirror averaging, semantic logit offsets, the colour-code albedo, the appearance prior and the
    smoothing of the back depth.

    Raises:
        WeightsError: ``weights_mismatch`` for an albedo or prior the network cannot take.
    """
    model.mirror_average = settings.mirrored
    if settings.back_depth_smoothing_px:
        model.back_depth_sigma_px = float(settings.back_depth_smoothing_px)
    if settings.semantic_logit_offsets:
        vec = torch.zeros(len(names))
        for label, value in settings.semantic_logit_offsets.items():
            vec[names.index(label)] = float(value)
        model.semantic_logit_offsets = vec
    if settings.colour_albedo is not None:
        try:
            model.set_colour_albedo(torch.tensor(settings.colour_albedo, dtype=torch.float32))
        except (ValueError, TypeError, AttributeError) as e:
            raise WeightsError("weights_mismatch", f"model card {name}.json: inference.colour_albedo is unusable ({e}); "
                                                   "write it again with s3d-train colour-albedo") from None
    prior = settings.z_prior
    if prior is not None:
        try:
            rows = prior["scale_tril"]  # ragged: row i holds the i + 1 entries up to the diagonal
            tril = torch.zeros(len(rows), len(rows))
            for i, row in enumerate(rows):
                tril[i, :len(row)] = torch.tensor(row, dtype=torch.float32)
            model.set_z_prior(torch.tensor(prior["mean"]), tril)
        except (ValueError, TypeError, AttributeError) as e:
            raise WeightsError("weights_mismatch", f"model card {name}.json: inference.z_prior is unusable ({e}); "
                                                   "fit it again with s3d-train fit-prior") from None


def load_mask2triplane(weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR, device: str | torch.device = "cpu",
                       name: str = DEFAULT_NAMES["mask2triplane"], label_set: str | None = LABEL_SET):
    """``(Mask2Triplane in eval mode, card)`` from ``<weights_dir>/<name>.{safetensors,json}``. See :func:`load_model`."""
    return load_model("mask2triplane", weights_dir, device, name, label_set)


def load_sketch2mask(weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR, device: str | torch.device = "cpu",
                     name: str = DEFAULT_NAMES["sketch2mask"], label_set: str | None = LABEL_SET):
    """``(SketchToMask in eval mode, card)`` from ``<weights_dir>/<name>.{safetensors,json}``. See :func:`load_model`."""
    return load_model("sketch2mask", weights_dir, device, name, label_set)
