"""Mask -> tri-plane generator: a face mask and a latent z -> w+ -> three feature planes -> a field.

The mask's classes are the config's label set (the 19 CelebAMask-HQ classes by default, or pix2pix3D's
six seg2cat classes; :func:`backend.models.config.config_labels`).

The structure follows pix2pix3D (CVPR 2023, section 3: a mask encoder gives the geometry ws, z through an
MLP gives the appearance ws, w+ drives an EG3D tri-plane synthesis, an MLP decodes point features to
density, colour and semantic logits). One change, measured on this project (docs/design.md section
4): a mask squeezed through one global vector gives an average head, so the planes are also conditioned
on the mask pixel by pixel, as PAiC-3D (2023, section 3.2) does with its input view:

* the X-Z plane is aligned with the front-view mask (backend/coords.py: the input view spans the box's
  X-Z face exactly), so a 2D U-Net on the mask produces it directly;
* the X-Y and Y-Z planes are built by pooling those pixel features along the collapsed image axis
  (PAiC-3D's feature pooling along plane axes) and expanding along depth (Y) with a learned depth code;
* a few StyleGAN2 modulated convolutions (Karras et al., CVPR 2020, section 2.2) per plane, modulated by
  w+ (one geometry w and one appearance w per layer), turn those into the planes.

Appearance: a conditional-VAE encoder (Kingma & Welling 2014; Sohn et al. 2015) sees the ground-truth RGB
during training and gives q(z | rgb, mask); at inference z comes from the user's seed, drawn from N(0, I)
or, when the model card has one, from a Gaussian fitted to the training heads' codes
(:meth:`Mask2Triplane.set_z_prior`), so the same mask with different seeds gives different skin and
hair colours.

Coordinates: ``xyz`` are normalised box coordinates in [-1, 1]^3 (backend/coords.py), X right, Y depth
(the face looks along -Y), Z up. Plane storage (all ``R x R``, ``grid_sample`` with
``align_corners=False`` so pixel centres match backend/coords.py):

* plane 0, X-Y: rows index y (row 0 at y = -1), columns index x; sampled at ``(x, y)``;
* plane 1, X-Z: image-aligned with the front mask: rows index -z (row 0 at z = +1), columns x;
  sampled at ``(x, -z)``;
* plane 2, Y-Z: rows index -z, columns index y; sampled at ``(y, -z)``.

The depth-interval prior (config ``depth_interval_slope``) is described in backend/models/triplane.py.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.models.back_depth import smooth_back_depth
from backend.models.colour_code import CODE_DIM, ColourMapping, checked_albedo
from backend.models.config import LabelSetError, config_labels
from backend.models.mask_encoder import (  # noqa: F401
    AppearanceEncoder,
    MaskEncoder,
    MaskEncoding,
    ids_to_onehot,
    resample_onehot,
)
from backend.models.triplane import ModulatedConv2d, TriplaneDecoder, TriplaneSynthesis  # noqa: F401

#: Keys every Mask2Triplane config must hold (see backend/models/config.py).
REQUIRED_KEYS = (
    "num_classes", "mask_resolution", "encoder_channels", "pixel_feature_channels", "z_dim", "w_dim",
    "num_ws_geometry", "num_ws_appearance", "plane_resolution", "plane_channels", "synthesis_channels",
    "depth_code_channels", "decoder_hidden", "density_scale", "appearance_resolution", "appearance_channels",
)


class Mask2Triplane(nn.Module):
    """The mask-to-3D generator: :class:`MaskEncoder`, :class:`TriplaneSynthesis`, :class:`TriplaneDecoder`
    and the training-only :class:`AppearanceEncoder`, built from a config dict (backend/models/config.py).

    Typical inference::

        planes = model.planes_from_mask(mask_ids, model.sample_z(seed))  # once per job
        out = model.query(planes, xyz_chunk)                               # many times
    """

    #: Parameters whose shape a config change may grow by trailing inputs: a warm start from an earlier
    #: run zero-fills the new part (training.loop.warm_start ``expand``); today the decoder's first layer,
    #: which gains one input with ``decoder_relative_depth``.
    WARM_START_EXPANDABLE: tuple[str, ...] = ("decoder.fc1.weight",)
    #: Parts a config may add that an earlier run lacks: they keep their initialisation on a warm start.
    WARM_START_FRESH: tuple[str, ...] = ("colour_mapping.", "colour_codes")

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        missing = [k for k in REQUIRED_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"Mask2Triplane config lacks {missing}; build it from backend.models.config.PROFILES")
        self.cfg = dict(cfg)
        #: The label set the network serves (:func:`backend.models.config.config_labels`: the config's
        #: ``label_set``, celebamask-hq-19 without one); its ``mirror_ids`` drive the mirror averaging.
        self.labels = config_labels(cfg)
        self._mirror_ids = list(self.labels.mirror_ids)
        self.num_classes = cfg["num_classes"]
        self.z_dim = cfg["z_dim"]
        self.num_ws_geometry = cfg["num_ws_geometry"]
        self.num_ws = cfg["num_ws_geometry"] + cfg["num_ws_appearance"]
        self.w_dim = cfg["w_dim"]
        self.mask_encoder = MaskEncoder(cfg)
        self.synthesis = TriplaneSynthesis(cfg)
        self.decoder = TriplaneDecoder(cfg)
        self.appearance_encoder = AppearanceEncoder(cfg)
        #: With config ``appearance_code: "colours"``, z is made from a code of named colours
        #: (backend/models/colour_code.py) by :attr:`colour_mapping`, and seeds draw that code from the
        #: table of training heads' codes :attr:`colour_codes` ``(N, 18)`` (a buffer, so the weights carry it).
        self.colour_mapping: ColourMapping | None = None
        if cfg.get("appearance_code", "cvae") == "colours":
            if self.labels.subject != "human":
                raise LabelSetError(f"appearance_code 'colours' averages human class groups "
                                    f"(backend/models/colour_code.py); label set {self.labels.name!r} needs 'cvae'")
            self.colour_mapping = ColourMapping(cfg["z_dim"])
            self.register_buffer("colour_codes", torch.full((int(cfg.get("colour_code_table", 512)), CODE_DIM), 0.5))
        #: The card's ``inference.colour_albedo`` ``(N, 18)``: per row of :attr:`colour_codes`, the same head's
        #: mean *albedo* per group (its ground-truth mesh), the colours the mesh gets; None: the codes themselves.
        self.colour_albedo: torch.Tensor | None = None
        #: ``(num_classes,)`` float32 added to the semantic logits at inference (eval mode only), or None: the
        #: card's ``inference.semantic_logit_offsets`` (backend/models/loading.py), an inference setting
        self.semantic_logit_offsets: torch.Tensor | None = None
        #: The card's ``inference.mirror_average``: :meth:`planes_from_mask` returns a mirror pair of planes
        #: and :meth:`query` averages the two fields (test-time flip averaging, an inference setting).
        self.mirror_average: bool = False
        self.back_depth_sigma_px = 0.0  # the card's inference.back_depth_smoothing_px (backend/models/back_depth.py)
        #: The card's ``inference.z_prior``: ``(mean (z_dim,), scale_tril (z_dim, z_dim))`` of the Gaussian
        #: :meth:`sample_z` draws from, or None for N(0, I) (:meth:`set_z_prior`).
        self.z_prior: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def surface_sigma(self) -> float:
        """Density sigma at the surface (occupancy logit 0): the marching-cubes level for ``sigma``."""
        return self.decoder.density_scale * math.log(2.0)

    def depth_interval(self, planes: torch.Tensor) -> torch.Tensor:
        """The depth-interval channels ``(B, 2, R, R)`` of ``planes (B, 3, C, R, R)``: centre c and
        half-thickness h along Y (normalised box units) per front-view pixel (row 0 = top, column 0 = x -1).
        Meaningful only with ``depth_interval_slope > 0`` (see the module docstring)."""
        return planes[:, 1, :2]

    def _colour_rows(self, seed: int, batch: int) -> torch.Tensor:
        if self.colour_mapping is None:
            raise RuntimeError("this generator has no colour code (config appearance_code is not 'colours')")
        g = torch.Generator().manual_seed(int(seed))
        return torch.randint(self.colour_codes.shape[0], (batch,), generator=g)

    def sample_colour_code(self, seed: int, batch: int = 1) -> torch.Tensor:
        """The colour code of a seed, ``(batch, 18)`` float32 on the CPU: rows of :attr:`colour_codes` chosen by
        a CPU generator seeded with ``seed`` (the same seed, the same code).

        Raises:
            RuntimeError: the model has no colour code (config ``appearance_code`` is not ``"colours"``).
        """
        return self.colour_codes.detach().cpu()[self._colour_rows(seed, batch)].float()

    def sample_colour_albedo(self, seed: int, batch: int = 1) -> torch.Tensor:
        """The albedo of the seed's colour code, ``(batch, 18)`` float32 sRGB: the same rows as
        :meth:`sample_colour_code` in :attr:`colour_albedo`, or the code itself when the card has none.

        Raises:
            RuntimeError: the model has no colour code.
        """
        if self.colour_albedo is None:
            return self.sample_colour_code(seed, batch)
        return self.colour_albedo[self._colour_rows(seed, batch)].float()

    def set_colour_albedo(self, table: torch.Tensor | None) -> None:
        """Use ``table (N, 18)`` sRGB in [0, 1], one row per :attr:`colour_codes` row, as the codes' albedo (None:
        the codes themselves). Raises ValueError (:func:`~backend.models.colour_code.checked_albedo`)."""
        codes = self.colour_codes if self.colour_mapping is not None else None
        self.colour_albedo = None if table is None else checked_albedo(table, codes)

    def z_from_colours(self, code: torch.Tensor) -> torch.Tensor:
        """``code (B, 18)`` sRGB in [0, 1] (backend/models/colour_code.py) -> ``z (B, z_dim)`` on the model's
        device, through :attr:`colour_mapping`.

        Raises:
            RuntimeError: the model has no colour code.
        """
        if self.colour_mapping is None:
            raise RuntimeError("this generator has no colour code (config appearance_code is not 'colours')")
        device = next(self.colour_mapping.parameters()).device
        return self.colour_mapping(code.to(device))

    def posterior_z(self, rgb: torch.Tensor, mask_onehot: torch.Tensor) -> torch.Tensor:
        """The code of a ground-truth view, ``(B, z_dim)``: z of its colour code with a colour-code generator,
        else the cVAE posterior mean. ``rgb (B, 3, H, W)`` float32 sRGB in [0, 1], ``mask_onehot (B, K, H',
        W')`` (how evaluation renders a known head)."""
        if self.colour_mapping is not None:
            from backend.models.colour_code import colour_code

            return self.z_from_colours(colour_code(rgb, mask_onehot))
        return self.appearance_encoder(rgb, mask_onehot)[0]

    def sample_z(self, seed: int, batch: int = 1, device: str | torch.device = "cpu") -> torch.Tensor:
        """The appearance code of a seed, ``(batch, z_dim)`` float32. With a colour code
        (:meth:`sample_colour_code`), z of the seed's colour code; otherwise eps ~ N(0, I) from a CPU generator
        seeded with ``seed``, mapped through :attr:`z_prior` when the card has one (``mean + scale_tril @
        eps``), else eps itself. The same seed always gives the same code."""
        if self.colour_mapping is not None:
            with torch.no_grad():
                return self.z_from_colours(self.sample_colour_code(seed, batch)).to(device)
        g = torch.Generator().manual_seed(int(seed))
        eps = torch.randn(batch, self.z_dim, generator=g)
        if self.z_prior is not None:
            mean, scale_tril = self.z_prior
            eps = mean[None] + eps @ scale_tril.T
        return eps.to(device)

    def set_z_prior(self, mean: torch.Tensor | None, scale_tril: torch.Tensor | None = None) -> None:
        """Use the Gaussian ``N(mean, scale_tril scale_tril^T)`` for :meth:`sample_z` (None: N(0, I)).

        ``mean (z_dim,)``, ``scale_tril (z_dim, z_dim)`` lower-triangular float32: a fit of the codes the
        appearance encoder gives the training heads (the aggregate posterior; training/prior_fit.py). The
        KL term only pulls each posterior towards N(0, I); the codes the decoder learnt lie elsewhere, so
        N(0, I) samples decode to near-average colours, and a fitted prior samples where the codes are
        (ex-post density estimation: Ghosh et al., "From variational to deterministic autoencoders", ICLR
        2020, section 4).

        Raises:
            ValueError: wrong shapes or non-finite values.
        """
        if mean is None:
            self.z_prior = None
            return
        mean = torch.as_tensor(mean, dtype=torch.float32)
        scale_tril = torch.as_tensor(scale_tril, dtype=torch.float32)
        if mean.shape != (self.z_dim,) or scale_tril.shape != (self.z_dim, self.z_dim):
            raise ValueError(f"z prior must be mean ({self.z_dim},) and scale_tril ({self.z_dim}, {self.z_dim}), "
                             f"got {tuple(mean.shape)} and {tuple(scale_tril.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(scale_tril).all()):
            raise ValueError("z prior has non-finite values")
        self.z_prior = (mean, torch.tril(scale_tril))

    def _check_mask(self, mask_onehot: torch.Tensor) -> None:
        if mask_onehot.dim() != 4 or mask_onehot.shape[1] != self.num_classes or mask_onehot.shape[2] != mask_onehot.shape[3]:
            raise ValueError(f"mask_onehot must be (B, {self.num_classes}, H, H) float, got {tuple(mask_onehot.shape)}")

    def encode(self, mask_onehot: torch.Tensor, z: torch.Tensor) -> MaskEncoding:
        """``mask_onehot (B, K, H, H)`` float32 + ``z (B, z_dim)`` -> :class:`MaskEncoding` (w+, pixel features).

        Raises:
            ValueError: wrong shapes.
        """
        self._check_mask(mask_onehot)
        if z.dim() != 2 or z.shape[1] != self.z_dim or z.shape[0] != mask_onehot.shape[0]:
            raise ValueError(f"z must be (B={mask_onehot.shape[0]}, {self.z_dim}), got {tuple(z.shape)}")
        return self.mask_encoder(mask_onehot, z)

    def geometry_ws(self, mask_onehot: torch.Tensor) -> torch.Tensor:
        """Mask-derived w+ rows ``(B, num_ws_geometry, w_dim)`` (the sketch U-Net's L_SV target)."""
        self._check_mask(mask_onehot)
        return self.mask_encoder.geometry_ws(mask_onehot)

    def synthesize(self, encoding: MaskEncoding) -> torch.Tensor:
        """:class:`MaskEncoding` -> planes ``(B, 3, plane_channels, R, R)`` float32. With the depth-interval
        prior, its two channels are synthesised with the appearance ws of z = 0 (seed-independent shape), and the
        interval's back is smoothed when the card asks for it (:attr:`back_depth_sigma_px`, 0 in training)."""
        neutral = None
        if self.decoder.interval_slope:
            w = encoding.w_plus
            zero = w.new_zeros(w.shape[0], self.z_dim)
            app = self.mask_encoder.appearance_mapping(zero).view(w.shape[0], -1, self.w_dim)
            neutral = torch.cat([w[:, :self.num_ws_geometry], app], dim=1)
        planes = self.synthesis(encoding.w_plus, encoding.pixel_features, neutral)
        return smooth_back_depth(planes, self.back_depth_sigma_px) if self.decoder.interval_slope else planes

    def query(self, planes: torch.Tensor, xyz: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode ``xyz (B, N, 3)`` normalised box coordinates on ``planes (B, 3, C, R, R)``.

        Returns ``{"sigma": (B, N, 1) >= 0, "rgb": (B, N, 3) linear in [0, 1], "semantic": (B, N, K) logits,
        "occupancy_logit": (B, N, 1)}``. Points outside the box see zero plane features. Call it in
        chunks of a few hundred thousand points under ``torch.no_grad()`` for dense grids.

        In eval mode, :attr:`semantic_logit_offsets` (when set) is added to the semantic logits: logit
        adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021). Training weights
        the small face parts' cross-entropy x3 and aims a quarter of the render rays at them, which paints
        them wider than the mask has them (docs/models.md); density and colour are unchanged.

        ``planes`` may be a mirror pair ``(B, 2, 3, C, R, R)`` (:meth:`planes_from_onehot`): then the
        result is the pair's mean field, and ``semantic`` holds log-probabilities (same argmax use).
        """
        if planes.dim() == 6:
            return self._query_mirror_pair(planes, xyz)
        out = self.decoder(planes, xyz)
        if self.semantic_logit_offsets is not None and not self.training:
            out = {**out, "semantic": out["semantic"] + self.semantic_logit_offsets.to(out["semantic"])}
        return out

    def planes_from_onehot(self, mask_onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``mask_onehot (B, K, H, H)`` float32 (K = ``num_classes``) + ``z (B, z_dim)`` -> planes
        ``(B, 3, C, R, R)``, or with :attr:`mirror_average` a mirror pair ``(B, 2, 3, C, R, R)``: ``[:, 0]``
        the mask's planes, ``[:, 1]`` the planes of the mirrored mask (columns flipped, left/right labels
        swapped by the label set's ``mirror_ids``; for a set without left/right classes only flipped) with
        the same z.
        :meth:`query` averages the pair's two fields, the second one mirrored back (x -> -x).

        Test-time flip averaging (standard for segmentation; not in pix2pix3D or S3D): the mirrored mask is
        a face as plausible as the input, so the generator's errors that are not mirror-symmetric average
        out. It doubles the cost of the planes and of every query.

        Raises:
            ValueError: wrong shapes (:meth:`encode`).
        """
        planes = self.synthesize(self.encode(mask_onehot, z))
        if not self.mirror_average:
            return planes
        mirrored = mask_onehot.flip(-1)[:, self._mirror_ids]
        return torch.stack([planes, self.synthesize(self.encode(mirrored, z))], dim=1)

    @torch.no_grad()
    def planes_from_mask(self, mask_ids: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Label ids ``(B, H, H)`` long + ``z (B, z_dim)`` -> planes (no gradients), shaped as
        :meth:`planes_from_onehot` says: ``(B, 3, C, R, R)``, a mirror pair ``(B, 2, 3, C, R, R)`` with
        :attr:`mirror_average`."""
        onehot = ids_to_onehot(mask_ids, self.num_classes).to(z.device)
        return self.planes_from_onehot(onehot, z)

    def _query_mirror_pair(self, pair: torch.Tensor, xyz: torch.Tensor) -> dict[str, torch.Tensor]:
        """The mean field of a mirror pair ``(B, 2, 3, C, R, R)`` (:meth:`planes_from_onehot`): occupancy
        logits and colours averaged, the surface stays at logit 0; the semantic output is the log of the mean
        of the two softmaxes (left/right labels of the mirrored field swapped back)."""
        if pair.shape[1] != 2:
            raise ValueError(f"a mirror pair of planes is (B, 2, 3, C, R, R), got {tuple(pair.shape)}")
        a = self.query(pair[:, 0], xyz)
        b = self.query(pair[:, 1], xyz * xyz.new_tensor([-1.0, 1.0, 1.0]))
        return self._mean_with_mirrored(a, b)

    def query_symmetric(self, planes: torch.Tensor, xyz: torch.Tensor) -> dict[str, torch.Tensor]:
        """The field made exactly mirror-symmetric about the plane x = 0: the mean of :meth:`query` at
        ``xyz`` and at ``(-x, y, z)``, left/right labels of the mirrored side swapped back (so a left eye
        stays a left eye). ``planes`` as :meth:`query` takes them; same outputs as :meth:`query` (the
        semantic output as log-probabilities). For an artist who wants a symmetric head."""
        a = self.query(planes, xyz)
        b = self.query(planes, xyz * xyz.new_tensor([-1.0, 1.0, 1.0]))
        return self._mean_with_mirrored(a, b)

    def _mean_with_mirrored(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mean of a field ``a`` and a field ``b`` queried at the mirrored points: occupancy logits (the
        surface stays at logit 0) and colours averaged, the semantic output the log of the mean of the two
        softmaxes with ``b``'s left/right labels swapped."""
        occ = (a["occupancy_logit"] + b["occupancy_logit"]) / 2
        probs = (a["semantic"].softmax(-1) + b["semantic"][..., self._mirror_ids].softmax(-1)) / 2
        return {"occupancy_logit": occ, "sigma": self.decoder.density_scale * F.softplus(occ),
                "rgb": (a["rgb"] + b["rgb"]) / 2, "semantic": probs.clamp_min(1e-12).log()}

    def forward(self, mask_onehot: torch.Tensor, z: torch.Tensor, xyz: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode, synthesise and query in one call (for DistributedDataParallel); adds ``planes``, ``w_plus``."""
        enc = self.encode(mask_onehot, z)
        planes = self.synthesize(enc)
        out = self.query(planes, xyz)
        out["planes"] = planes
        out["w_plus"] = enc.w_plus
        return out
