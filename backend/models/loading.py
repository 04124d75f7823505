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

import math
import os
from typing import Any

import torch

from backend.coords import BOX_SIZE_M
from backend.labels import LABEL_SETS
from backend.weights import DEFAULT_WEIGHTS_DIR, WeightsError, load_state_dict

#: Label-set name the cards use for the CelebAMask-HQ order of backend/labels.py (the default everywhere).
LABEL_SET = "celebamask-hq-19"
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


def _finite_number(v: Any) -> bool:
    """A real int or float (not a bool) that is neither NaN nor infinite."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_card(card: dict[str, Any], kind: str, name: str, label_set: str | None = LABEL_SET) -> None:
    """Raise :class:`WeightsError` (code ``weights_mismatch``) when the card does not fit this code.

    ``label_set``: the label set the caller needs (default celebamask-hq-19); None accepts any set
    backend/labels.py knows. Either way the card's config must agree with its ``label_set`` (class count,
    and the config's ``label_set`` key, absent meaning celebamask-hq-19).
    """
    def bad(msg: str) -> WeightsError:
        return WeightsError("weights_mismatch", f"model card {name}.json: {msg}")

    if card.get("kind") != kind:
        raise bad(f"kind is {card.get('kind')!r}, expected {kind!r}")
    card_set = card.get("label_set")
    if card_set not in LABEL_SETS:
        raise bad(f"label_set is {card_set!r}, this code knows {sorted(LABEL_SETS)}")
    if label_set is not None and card_set != label_set:
        raise bad(f"label_set is {card_set!r}, this code uses {label_set!r} here")
    labels = LABEL_SETS[card_set]
    if not isinstance(card.get("config"), dict):
        raise bad("has no 'config' object (the architecture); retrain or restore the card")
    if card["config"].get("num_classes") != labels.num_classes:
        raise bad(f"config num_classes is {card['config'].get('num_classes')}, label set {card_set!r} has "
                  f"{labels.num_classes}")
    if card["config"].get("label_set", LABEL_SET) != card_set:
        raise bad(f"config label_set is {card['config'].get('label_set', LABEL_SET)!r}, the card says {card_set!r}")
    inference = card.get("inference", {})
    if not isinstance(inference, dict) or not isinstance(inference.get("mirror_average", False), bool):
        raise bad(f"'inference' must be an object whose mirror_average is true or false, got {inference!r}")
    offsets = inference.get("semantic_logit_offsets", {})
    if not isinstance(offsets, dict) or not all(k in labels.names and _finite_number(v) for k, v in offsets.items()):
        raise bad(f"inference.semantic_logit_offsets must map label names of {card_set!r} to finite numbers, "
                  f"got {offsets!r}")
    prior = inference.get("z_prior")
    if prior is not None and not (isinstance(prior, dict) and isinstance(prior.get("mean"), list)
                                  and isinstance(prior.get("scale_tril"), list)):
        raise bad("inference.z_prior must be an object with lists 'mean' and 'scale_tril' (s3d-train fit-prior)")
    if kind == "mask2triplane":
        box = card.get("box_size_m")
        if not isinstance(box, (int, float)) or abs(float(box) - BOX_SIZE_M) > 1e-9:
            raise bad(f"box_size_m is {box!r}, but backend/coords.py uses {BOX_SIZE_M} m; the weights were "
                      "trained for another box")


def load_model(kind: str, weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR, device: str | torch.device = "cpu",
               name: str | None = None, label_set: str | None = LABEL_SET) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Verify, build and load ``<name>`` (default ``<kind>_lite``) -> ``(model in eval mode on device, card)``.

    ``label_set``: the label set the card must serve (default celebamask-hq-19; None: any known set,
    :func:`check_card`). The network's class count is the card's set's.

    Raises:
        WeightsError: missing/corrupted files (``weights_missing``, ``weights_corrupt``), a card that does
            not fit this code or tensors that do not fit the config (``weights_mismatch``).
    """
    name = name or DEFAULT_NAMES[kind]
    state, card = load_state_dict(name, weights_dir, device="cpu")
    check_card(card, kind, name, label_set)
    names = LABEL_SETS[card["label_set"]].names
    try:
        model = build_model(kind, card["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError("weights_mismatch", f"model card {name}.json has an unusable config: {e}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise WeightsError("weights_mismatch", f"weights {name}.safetensors do not fit the config in {name}.json: "
                                               f"{' '.join(first)}; retrain or restore both files") from None
    model.mirror_average = card.get("inference", {}).get("mirror_average", False)
    offsets = card.get("inference", {}).get("semantic_logit_offsets")
    if offsets:
        vec = torch.zeros(len(names))
        for label, value in offsets.items():
            vec[names.index(label)] = float(value)
        model.semantic_logit_offsets = vec
    albedo = card.get("inference", {}).get("colour_albedo")
    if albedo is not None:
        try:
            model.set_colour_albedo(torch.tensor(albedo, dtype=torch.float32))
        except (ValueError, TypeError, AttributeError) as e:
            raise WeightsError("weights_mismatch", f"model card {name}.json: inference.colour_albedo is unusable ({e}); "
                                                   "write it again with s3d-train colour-albedo") from None
    prior = card.get("inference", {}).get("z_prior")
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
    return model.to(device).eval(), card


def load_mask2triplane(weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR, device: str | torch.device = "cpu",
                       name: str = DEFAULT_NAMES["mask2triplane"], label_set: str | None = LABEL_SET):
    """``(Mask2Triplane in eval mode, card)`` from ``<weights_dir>/<name>.{safetensors,json}``. See :func:`load_model`."""
    return load_model("mask2triplane", weights_dir, device, name, label_set)


def load_sketch2mask(weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR, device: str | torch.device = "cpu",
                     name: str = DEFAULT_NAMES["sketch2mask"], label_set: str | None = LABEL_SET):
    """``(SketchToMask in eval mode, card)`` from ``<weights_dir>/<name>.{safetensors,json}``. See :func:`load_model`."""
    return load_model("sketch2mask", weights_dir, device, name, label_set)
