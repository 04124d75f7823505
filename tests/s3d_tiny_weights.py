"""Tiny random-initialised networks saved as weights, for backend tests that must not need bundled weights.

``make_tiny_weights(dir)`` writes ``mask2triplane_lite`` and ``sketch2mask_lite`` cards + safetensors
with the lite architecture shrunk to a few thousand parameters; ``make_tiny_weights(dir, subject="cat")``
writes the cat networks ``mask2triplane_cat_lite`` / ``sketch2mask_cat_lite`` (6 seg2cat classes, card
``label_set`` seg2cat). Untrained, their density field has no
head surface; ``sphere_query`` wraps ``Mask2Triplane.query`` so the field's occupancy gets an analytic
ellipsoid (a head-sized blob) added while the networks' own colour and semantic outputs are kept, which
exercises the real mesh, colour and export path.
"""
from __future__ import annotations

from pathlib import Path

import torch

from backend.coords import BOX_SIZE_M
from backend.labels import label_set
from backend.models.config import for_label_set, get_config
from backend.models.loading import SUBJECT_WEIGHTS, build_model
from backend.weights import save_weights


def tiny_configs(set_name: str = "celebamask-hq-19") -> dict[str, dict]:
    """The tiny configs of both networks, serving the label set ``set_name``."""
    m2t = get_config("lite", "mask2triplane")
    m2t.update(mask_resolution=64, encoder_channels=[8, 8, 8, 8, 8], pixel_feature_channels=8, z_dim=8, w_dim=16,
               num_ws_geometry=2, num_ws_appearance=2, plane_resolution=32, plane_channels=8, synthesis_channels=8,
               depth_code_channels=4, decoder_hidden=16, appearance_resolution=32, appearance_channels=[4, 8, 8, 8],
               depth_interval_slope=0.0)  # the analytic ellipsoid of sphere_query is the only shape
    s2m = get_config("lite", "sketch2mask")
    s2m.update(channels=[4, 4, 4, 4, 4, 4, 4, 4], num_ws_geometry=2, w_dim=16)
    labels = label_set(set_name)
    return {"mask2triplane": for_label_set(m2t, labels), "sketch2mask": for_label_set(s2m, labels)}


def make_tiny_weights(weights_dir: str | Path, seed: int = 0, sketch: bool = True, empty: bool = False,
                      subject: str = "human") -> Path:
    """Save tiny random networks of ``subject`` under its names (``backend.models.loading.SUBJECT_WEIGHTS``:
    ``mask2triplane_lite`` / ``sketch2mask_lite``, or the ``_cat_lite`` ones) into ``weights_dir``.

    ``empty``: push the occupancy logit far below 0 everywhere, so the field surely has no surface.
    """
    torch.manual_seed(seed)
    names = SUBJECT_WEIGHTS[subject]
    cfgs = tiny_configs(names["label_set"])
    kinds = ["mask2triplane", "sketch2mask"] if sketch else ["mask2triplane"]
    for kind in kinds:
        model = build_model(kind, cfgs[kind])
        if kind == "mask2triplane":  # louder colour and class outputs, so they vary over space and with z
            with torch.no_grad():
                model.decoder.out.weight[1:4] *= 4.0   # colours: varied, not saturated
                model.decoder.out.weight[4:] *= 30.0   # classes: several win somewhere on the surface
                if empty:
                    model.decoder.out.bias[0] = -40.0
        card = {"kind": kind, "profile": "tiny-test", "config": cfgs[kind], "label_set": names["label_set"],
                "box_size_m": BOX_SIZE_M, "data": "none: random initialisation for tests"}
        save_weights(model.state_dict(), card, names[kind], weights_dir)
    return Path(weights_dir)


def sphere_query(original_query, radii=(0.55, 0.6, 0.7), sharpness=12.0):
    """A ``Mask2Triplane.query`` replacement adding an ellipsoid (box units) to the occupancy logit."""
    import torch.nn.functional as F

    r = torch.tensor(radii)

    def query(self, planes, xyz):
        out = original_query(self, planes, xyz)
        d = torch.linalg.norm(xyz / r.to(xyz.device), dim=-1, keepdim=True)
        occ = sharpness * (1.0 - d) + 0.01 * out["occupancy_logit"]
        out = dict(out)
        out["occupancy_logit"] = occ
        out["sigma"] = self.decoder.density_scale * F.softplus(occ)
        return out

    return query
