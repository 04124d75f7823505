"""Typed model cards (backend/models/card.py): the bundled cards round-trip byte for byte, unknown keys are
kept in their places, and a card that does not fit this code is refused with the loader's errors."""
from __future__ import annotations

import copy
import json
from dataclasses import fields
from pathlib import Path

import pytest

from backend.models.card import InferenceSettings, ModelCard
from backend.weights import WeightsError, card_json

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
BUNDLED = ("mask2triplane_lite", "sketch2mask_lite", "mask2triplane_cat_lite", "sketch2mask_cat_lite")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_cards_round_trip_byte_for_byte(name):
    text = (WEIGHTS / f"{name}.json").read_text()
    card = ModelCard.from_dict(json.loads(text), name, kind=None, label_set=None)
    assert card.kind == name.split("_")[0] and card.name == name and card.sha256
    assert isinstance(card.inference, InferenceSettings)
    assert json.dumps(card.to_dict(), indent=2) + "\n" == text  # as the ship scripts wrote them
    assert json.loads(card_json(card.to_dict())) == json.loads(text)


def test_bundled_generator_card_reads_its_inference_settings():
    d = json.loads((WEIGHTS / "mask2triplane_lite.json").read_text())
    card = ModelCard.from_dict(d, "mask2triplane_lite", "mask2triplane")
    assert card.settings.mirrored == d["inference"]["mirror_average"]
    assert card.settings.semantic_logit_offsets == d["inference"]["semantic_logit_offsets"]
    typed = {f.name for f in fields(InferenceSettings)} - {"extra", "_order"}
    assert "colour_albedo" in typed and card.settings.colour_albedo == d["inference"].get("colour_albedo")
    assert set(card.inference.extra) == set(d["inference"]) - typed


def _card(**kw):
    d = {"kind": "sketch2mask", "profile": "lite", "config": {"num_classes": 19}, "label_set": "celebamask-hq-19",
         "mystery": [1, 2], "inference": {"note": "kept", "mirror_average": True, "z_prior": {"mean": [0.0],
                                                                                            "scale_tril": [[1.0]]}},
         "sha256": "abc"}
    d.update(kw)
    return d


def test_unknown_keys_and_key_order_survive_and_new_fields_come_last():
    d = _card()
    card = ModelCard.from_dict(copy.deepcopy(d), "x", "sketch2mask")
    assert card.extra == {"mystery": [1, 2]} and card.inference.extra == {"note": "kept"}
    assert card.settings.mirrored and card.settings.z_prior == {"mean": [0.0], "scale_tril": [[1.0]]}
    out = card.to_dict()
    assert out == d and list(out) == list(d) and list(out["inference"]) == list(d["inference"])
    card.metrics = {"miou": 0.5}
    card.inference.colour_albedo = [[0.1, 0.2, 0.3]]
    out = card.to_dict()
    assert list(out)[-1] == "metrics" and list(out["inference"])[-1] == "colour_albedo"


def test_a_new_card_lists_its_fields_in_the_export_order():
    card = ModelCard(kind="mask2triplane", profile="lite", config={"num_classes": 19}, box_size_m=0.3, data={},
                     training={}, metrics={}, inference=InferenceSettings(mirror_average=True))
    assert list(card.to_dict()) == ["kind", "profile", "config", "label_set", "box_size_m", "data", "training",
                                    "metrics", "inference"]
    assert card.to_dict()["inference"] == {"mirror_average": True}
    assert "inference" not in ModelCard(kind="sketch2mask").to_dict()


@pytest.mark.parametrize("change, kind, match", [
    ({"kind": "mask2triplane"}, "sketch2mask", "kind is 'mask2triplane', expected 'sketch2mask'"),
    ({"kind": "other"}, None, "kind is 'other'"),
    ({"label_set": "dogs"}, None, "label_set is 'dogs', this code knows"),
    ({"config": {"num_classes": 6}}, None, "config num_classes is 6"),
    ({"config": None}, None, "has no 'config' object"),
    ({"inference": {"mirror_average": "yes"}}, None, "mirror_average is true or false"),
    ({"inference": {"semantic_logit_offsets": {"tail": 1.0}}}, None, "semantic_logit_offsets"),
    ({"inference": {"semantic_logit_offsets": {"skin": float("nan")}}}, None, "semantic_logit_offsets"),
    ({"inference": {"z_prior": {"mean": 0}}}, None, "z_prior must be an object"),
    ({"kind": "mask2triplane", "box_size_m": 0.5}, "mask2triplane", "box_size_m is 0.5"),
    ({"kind": "mask2triplane"}, "mask2triplane", "box_size_m is None"),
])
def test_a_card_that_does_not_fit_this_code_is_refused(change, kind, match):
    with pytest.raises(WeightsError, match=match) as e:
        ModelCard.from_dict(_card(**change), "x", kind)
    assert e.value.code == "weights_mismatch" and str(e.value).startswith("model card x.json: ")


def test_the_caller_s_label_set_is_required():
    cat = _card(label_set="seg2cat", config={"num_classes": 6, "label_set": "seg2cat"})
    assert ModelCard.from_dict(cat, "x", label_set=None).label_set == "seg2cat"
    with pytest.raises(WeightsError, match="this code uses 'celebamask-hq-19' here"):
        ModelCard.from_dict(cat, "x")
