"""Model cards as typed objects: :class:`ModelCard` with its :class:`InferenceSettings`.

A card (``weights/<name>.json``, written by ``s3d-train export`` and updated by ``s3d-eval --update-cards``,
``s3d-train calibrate``, ``fit-prior`` and ``colour-albedo``) says what network the weights are (kind,
profile, config, label set, box size), how it was trained, what it measured and how inference must use it.
:meth:`ModelCard.from_dict` checks that the card describes a network this code can build and raises
:class:`backend.weights.WeightsError` (code ``weights_mismatch``) otherwise; :meth:`ModelCard.to_dict`
gives the card back with its keys in their original order and every key this code does not know kept, so
reading and writing a card loses nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from backend.coords import BOX_SIZE_M
from backend.labels import LABEL_SETS
from backend.weights import WeightsError

#: Label-set name the cards use for the CelebAMask-HQ order of backend/labels.py (the default everywhere).
LABEL_SET = "celebamask-hq-19"


def _finite_number(v: Any) -> bool:
    """A real int or float (not a bool) that is neither NaN nor infinite."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _ordered(obj: Any, order: tuple[str, ...], extra: dict[str, Any]) -> dict[str, Any]:
    """The fields of a card dataclass that were read (``order``) or are set (not None) and its ``extra`` keys
    as a dict, in ``order`` first, then in declaration order."""
    values = {f.name: getattr(obj, f.name) for f in fields(obj) if not f.name.startswith("_") and f.name != "extra"}
    values = {k: v for k, v in values.items() if v is not None or k in order}
    values.update(extra)
    return {k: values[k] for k in [*[k for k in order if k in values], *[k for k in values if k not in order]]}


@dataclass
class InferenceSettings:
    """A card's ``inference`` object: how the loaded network must be used (backend/models/loading.py).

    Attributes (None: absent from the card):
        mirror_average: average each prediction with the mirrored input's (absent: off).
        semantic_logit_offsets: ``{label name: offset}`` added to the semantic logits.
        semantic_logit_adjustment_tau: the tau the offsets were made with (``s3d-train export``).
        z_prior: the generator's appearance prior, ``{"mean": [...], "scale_tril": [[...], ...]}``.
        colour_albedo: the colour-code generator's albedo rows.
        back_depth_smoothing_px: spatial sigma (plane texels) of the bilateral smoothing of the back of the depth
            interval (backend/models/back_depth.py; absent or 0: off).
        extra: every other key (notes, calibration records), kept as read.
    """

    mirror_average: bool | None = None
    semantic_logit_adjustment_tau: float | None = None
    semantic_logit_offsets: dict[str, float] | None = None
    z_prior: dict[str, Any] | None = None
    colour_albedo: list | None = None
    back_depth_smoothing_px: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def mirrored(self) -> bool:
        """Whether inference averages with the mirrored input."""
        return bool(self.mirror_average)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InferenceSettings:
        """Settings of an ``inference`` object (already checked by :meth:`ModelCard.from_dict`)."""
        known = {f.name for f in fields(cls) if not f.name.startswith("_") and f.name != "extra"}
        return cls(**{k: v for k, v in d.items() if k in known},
                   extra={k: v for k, v in d.items() if k not in known}, _order=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        """The ``inference`` object: the keys read, in their order, then any set since."""
        return _ordered(self, self._order, self.extra)


@dataclass
class ModelCard:
    """A model card (``weights/<name>.json``).

    Attributes (None: absent from the card):
        kind: ``mask2triplane`` or ``sketch2mask``.
        profile: network profile (``lite``, ``paper``).
        config: the architecture (backend/models/config.py).
        label_set: the classes the network serves (backend/labels.py).
        box_size_m: edge of the head box the generator was trained for (mask2triplane cards).
        data: description of the training data.
        training: how it was trained (command, steps, minutes, machine, recipe, ...).
        metrics: numbers measured by ``s3d-eval`` (empty until then).
        inference: :class:`InferenceSettings`.
        sha256: sha256 of ``<name>.safetensors`` (written by ``save_weights``).
        name: the weights name (written by ``save_weights``).
        metrics_history: metrics of the same weights on earlier splits (``s3d-eval --update-cards``).
        extra: every other top-level key, kept as read.
    """

    kind: str
    profile: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    label_set: str = LABEL_SET
    box_size_m: float | None = None
    data: Any = None
    training: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    inference: InferenceSettings | None = None
    sha256: str | None = None
    name: str | None = None
    metrics_history: list | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def settings(self) -> InferenceSettings:
        """The inference settings; all defaults when the card has none."""
        return self.inference or InferenceSettings()

    @classmethod
    def from_dict(cls, card: dict[str, Any], name: str, kind: str | None = None,
                  label_set: str | None = LABEL_SET) -> ModelCard:
        """The card of ``<name>.json`` after checking that it fits this code.

        ``kind``: the network the caller needs (None: either). ``label_set``: the label set the caller needs
        (default celebamask-hq-19); None accepts any set backend/labels.py knows. Either way the card's
        config must agree with its ``label_set`` (class count, and the config's ``label_set`` key, absent
        meaning celebamask-hq-19).

        Raises:
            WeightsError: code ``weights_mismatch``, naming the card and what does not fit.
        """
        check(card, kind, name, label_set)
        known = {f.name for f in fields(cls) if not f.name.startswith("_") and f.name != "extra"}
        values = {k: v for k, v in card.items() if k in known}
        if "inference" in card:
            values["inference"] = InferenceSettings.from_dict(card["inference"])
        return cls(**values, extra={k: v for k, v in card.items() if k not in known}, _order=tuple(card))

    def to_dict(self) -> dict[str, Any]:
        """The card as a JSON-ready dict: the keys read, in their order, then any set since."""
        out = _ordered(self, self._order, self.extra)
        if self.inference is not None:
            out["inference"] = self.inference.to_dict()
        return out


def check(card: dict[str, Any], kind: str | None, name: str, label_set: str | None = LABEL_SET) -> None:
    """Raise :class:`WeightsError` (code ``weights_mismatch``) when the card dict does not fit this code
    (see :meth:`ModelCard.from_dict`)."""
    def bad(msg: str) -> WeightsError:
        return WeightsError("weights_mismatch", f"model card {name}.json: {msg}")

    if kind is not None and card.get("kind") != kind:
        raise bad(f"kind is {card.get('kind')!r}, expected {kind!r}")
    if card.get("kind") not in ("mask2triplane", "sketch2mask"):
        raise bad(f"kind is {card.get('kind')!r}, expected 'mask2triplane' or 'sketch2mask'")
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
    smoothing = inference.get("back_depth_smoothing_px", 0)
    if not (_finite_number(smoothing) and 0 <= smoothing <= 16):
        raise bad(f"inference.back_depth_smoothing_px must be a number of plane texels in 0-16, got {smoothing!r}")
    if card.get("kind") == "mask2triplane":
        box = card.get("box_size_m")
        if not isinstance(box, (int, float)) or abs(float(box) - BOX_SIZE_M) > 1e-9:
            raise bad(f"box_size_m is {box!r}, but backend/coords.py uses {BOX_SIZE_M} m; the weights were "
                      "trained for another box")
