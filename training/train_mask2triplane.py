"""Training of the mask -> tri-plane generator on SynHead (3D supervision + 2.5D render losses + cVAE KL).

Recipe (PAiC-3D section 3.3 with 3D data; pix2pix3D's generator trained without a discriminator because
SynHead has the 3D truth): per example, the one-hot mask and a z from the appearance encoder's posterior
q(z | ground-truth RGB, mask) (reparameterised) give the planes; the losses are

* occupancy BCE on SynHead points, mostly near the surface (``near_fraction``);
* colour L1 and semantic cross-entropy on the near/on-surface points;
* render losses on ``rays_per_view`` random pixels of ``ray_views`` of the front/back/left/right views:
  RGB L1, silhouette L1, depth L1 (metres), semantic NLL; off for the first ``render_warmup_steps``
  (an untrained field is a fog that fills the box, and the silhouette loss would fight the occupancy
  loss), then ramped in;
* ``kl_weight`` x KL(q(z | rgb, mask) || N(0, I)), so z ~ N(0, I) at inference gives plausible colours
  (the weight is ramped in over ``kl_warmup_steps`` so that the code is used before it is squeezed).

The network serves the data's label set (``data.labels``: 19 CelebAMask-HQ classes for SynHead, six
seg2cat classes for SynCat): the config's ``num_classes`` and ``label_set`` come from it
(:func:`backend.models.config.for_label_set`), and so do the small classes that the semantic terms weight
up and that extra rays are drawn from (:func:`training.losses.small_classes`). An ``--init-from`` run of
another label set is refused (training/loop.py ``warm_start``); CelebAMask-HQ photos (``adv_photos``) and
the colour code (``appearance_code: colours``) are human-only and refused for other sets.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.models.colour_code import CODE_DIM, colour_code
from backend.models.config import LabelSetError, for_label_set, get_config
from backend.models.mask2triplane import Mask2Triplane
from backend.models.renderer import VolumeRenderer
from training.adversarial import AdversarialStep, depth_normals, discriminator_image
from training.datasets import SynHead
from training.losses import (depth_interval_loss, kl_to_standard_normal, point_losses, render_losses,
                             small_class_weights, small_classes)
from training.loop import LoopLimits, RunContext, command_line, machine_description, run_loop, warm_start
from training.prefetch import PrefetchedBatches
from training.run_spec import TrainRun


@dataclass
class Mask2TriplaneRecipe:
    """Hyper-parameters of one run (recorded in checkpoints and model cards)."""

    batch: int = 4
    points: int = 8192
    near_fraction: float = 0.7
    rays_per_view: int = 256
    ray_views: int = 2
    render_samples: int = 16
    render_importance: int = 16
    lr: float = 1e-3
    kl_weight: float = 2e-3
    kl_warmup_steps: int = 1000      # KL weight ramped from 0 (against early posterior collapse)
    w_occ: float = 1.0
    w_point_rgb: float = 3.0
    w_point_sem: float = 0.3
    w_ray_rgb: float = 1.0
    w_ray_alpha: float = 1.0
    w_ray_depth: float = 10.0
    w_ray_sem: float = 0.1
    render_warmup_steps: int = 30    # render losses off while the occupancy takes shape ...
    render_ramp_steps: int = 100     # ... then ramped in linearly
    w_interval: float = 10.0         # depth-interval channels of the X-Z plane (when the config has the prior)
    occ_on_surface: bool = False     # on-surface points have no inside/outside: left out of the occupancy BCE
    small_class_weight: float = 3.0  # semantic CE weight of the small classes on the points (training/losses.py)
    small_class_rays: float = 0.25   # share of each view's rays drawn from those classes' pixels (they cover few)
    render_appearance_detached: bool = True  # RGB / semantic render losses cannot move the density
    ema_decay: float = 0.0  # moving average of the weights (training/loop.py run_loop); export and eval use it
    # adversarial training (training/adversarial.py): 0 = off
    adv_weight: float = 0.0          # weight of the non-saturating generator loss on rendered patches
    adv_patch: int = 32              # K: the discriminator's patches are K x K rendered rays
    adv_min_scale: float = 0.25      # smallest share of the view's side a patch spans (K / 128: native pixels)
    adv_lr: float = 2e-4             # discriminator learning rate (Adam, betas 0 / 0.99)
    adv_r1_gamma: float = 1.0        # R1 weight, applied every adv_r1_interval steps
    adv_r1_interval: int = 16
    adv_ramp_steps: int = 200        # the generator's adversarial weight ramps in while the discriminator learns
    adv_prior_z: bool = False        # render the adversarial patches with z ~ N(0, I), not the posterior code
    adv_photos: str = ""             # CelebAMask-HQ folder: photo + mask patches as more real samples (2D only)
    adv_photo_batch: int = 2         # photos per step; their masks are generated with z ~ N(0, I)
    # with config appearance_code "colours": the discriminator's condition also holds the head's colour code
    # (the same for the real and the rendered patch), so it judges detail for the asked colours and cannot
    # pull every head towards one average colour
    adv_code_condition: bool = False
    # with config appearance_code "colours": Gaussian noise (sRGB units) on the colour code during training
    colour_code_noise: float = 0.02


class Mask2TriplaneLoss(torch.nn.Module):
    """``forward(batch) -> {"loss", and each term}``; wraps the model so DistributedDataParallel sees one forward."""

    def __init__(self, model: Mask2Triplane, recipe: Mask2TriplaneRecipe):
        super().__init__()
        self.model = model
        self.recipe = recipe
        self.renderer = VolumeRenderer(recipe.render_samples, recipe.render_importance, background_rgb=1.0)
        weights = small_class_weights(model.num_classes, recipe.small_class_weight,
                                      classes=small_classes(model.labels))
        self.register_buffer("class_weights", weights if weights is not None else torch.ones(model.num_classes))
        # a plain attribute, not a submodule: the discriminator has its own optimiser and is not part of the
        # generator's DistributedDataParallel graph (AdversarialStep averages its gradients itself)
        self.adversarial: AdversarialStep | None = None
        self.code_condition = recipe.adv_weight > 0 and recipe.adv_code_condition
        if self.code_condition and model.colour_mapping is None:
            raise ValueError("adv_code_condition needs a generator with a code of named colours (config "
                             "appearance_code \"colours\"); this one has a cVAE code: drop the key or change the config")
        if self.code_condition and recipe.adv_photos:
            raise ValueError("adv_code_condition and adv_photos cannot be combined: the photos' masks are "
                             "generated from seeds, not from a colour code; use one of them")
        if recipe.adv_weight > 0:
            extra = CODE_DIM if self.code_condition else 0
            self.adversarial = AdversarialStep(model.num_classes, recipe.adv_patch, recipe.adv_lr, recipe.adv_r1_gamma,
                                               recipe.adv_r1_interval, device=next(model.parameters()).device,
                                               extra_condition=extra)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        r, m = self.recipe, self.model
        if m.colour_mapping is not None:  # a code of named colours: no posterior, no KL (colour_code.py)
            code = clean_code = colour_code(batch["rgb"], batch["mask"])
            if self.training and r.colour_code_noise > 0:
                code = code + r.colour_code_noise * torch.randn(code.shape, generator=_gen(batch, 1)).to(code.device)
            z = m.colour_mapping(code)
            mu, logvar = z, None
        else:
            mu, logvar = m.appearance_encoder(batch["rgb"], batch["mask"])
            clean_code = None
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        planes = m.synthesize(m.encode(batch["mask"], z))
        out = m.query(planes, batch["xyz"])
        occ_weight = None if r.occ_on_surface else 1.0 - batch["on_surface"]
        terms = point_losses(out, batch["occ"], batch["label"], batch["point_rgb"], batch["surface"], occ_weight,
                             self.class_weights)
        terms["kl"] = kl_to_standard_normal(mu, logvar) if logvar is not None else torch.zeros((), device=z.device)
        step = int(batch.get("step", 10 ** 9))
        kl_w = r.kl_weight * min(1.0, step / max(r.kl_warmup_steps, 1))
        loss = (r.w_occ * terms["occ"] + r.w_point_rgb * terms["point_rgb"] + r.w_point_sem * terms["point_sem"]
                + kl_w * terms["kl"])
        if "interval" in batch:
            terms["interval"] = depth_interval_loss(m.depth_interval(planes), batch["interval"], batch["interval_fg"])
            loss = loss + r.w_interval * terms["interval"]
        ramp = min(1.0, max(0.0, (step - r.render_warmup_steps) / max(r.render_ramp_steps, 1)))
        if "ray_o" in batch and ramp > 0:
            img = self.renderer.render_rays(lambda x: m.query(planes, x), batch["ray_o"], batch["ray_d"],
                                            batch["ray_fwd"], generator=None if not self.training else _gen(batch),
                                            detach_appearance=r.render_appearance_detached)
            rt = render_losses(img, batch["ray_rgb"], batch["ray_alpha"], batch["ray_depth"], batch["ray_label"])
            terms.update(rt)
            loss = loss + ramp * (r.w_ray_rgb * rt["ray_rgb"] + r.w_ray_alpha * rt["ray_alpha"]
                                  + r.w_ray_depth * rt["ray_depth"] + r.w_ray_sem * rt["ray_sem"])
        if self.adversarial is not None and "patch_ray_o" in batch:
            if r.adv_prior_z:  # pix2pix3D: a seed's code, not the ground truth's, must give a plausible head
                z_prior = torch.randn(mu.shape, generator=_gen(batch)).to(mu.device)
                adv_planes = m.synthesize(m.encode(batch["mask"], z_prior))
            else:
                adv_planes = planes
            terms["g_adv"] = self._adversarial_term(adv_planes, batch, clean_code if self.code_condition else None)
            loss = loss + r.adv_weight * min(1.0, step / max(r.adv_ramp_steps, 1)) * terms["g_adv"]
        terms["loss"] = loss
        return terms

    def _adversarial_term(self, planes: torch.Tensor, batch: dict[str, torch.Tensor],
                          code: torch.Tensor | None = None) -> torch.Tensor:
        """Render each head's patch rays (gradients reach density and colour) and score the patch against the
        real one; with photos in the batch (``photo_*``), also the photos' masks, generated with z ~ N(0, I),
        against the photos. ``code (B, CODE_DIM)`` sRGB in [0, 1] (``adv_code_condition``): the heads' colour
        codes, added to the condition as constant channels in [-1, 1]. :meth:`after_step` then trains the
        discriminator on the pairs."""
        fake, real = self._patch_pair(planes, batch, "")
        cond = batch["patch_label"]
        if code is not None:
            k = cond.shape[-1]
            cond = torch.cat([cond, (code * 2.0 - 1.0)[:, :, None, None].expand(-1, -1, k, k)], dim=1)
        if "photo_mask" in batch:
            m = self.model
            z = torch.randn(batch["photo_mask"].shape[0], m.z_dim, generator=_gen(batch)).to(planes.device)
            photo_planes = m.synthesize(m.encode(batch["photo_mask"], z))
            pf, pr = self._patch_pair(photo_planes, batch, "photo_")
            fake, real, cond = torch.cat([fake, pf]), torch.cat([real, pr]), torch.cat([cond, batch["photo_patch_label"]])
        return self.adversarial.generator_term(fake, real, cond)

    def _patch_pair(self, planes: torch.Tensor, batch: dict[str, torch.Tensor], prefix: str
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(rendered, real) discriminator images ``(B, 6, K, K)`` of the ``<prefix>patch_*`` rays of ``planes``;
        normals are zeroed where the real patch has no depth (photos)."""
        m, k = self.model, self.recipe.adv_patch
        head = prefix + "patch_"
        p = {key[len(head):]: v for key, v in batch.items() if key.startswith(head)}
        b = planes.shape[0]
        img = self.renderer.render_rays(lambda x: m.query(planes, x), p["ray_o"], p["ray_d"], p["ray_fwd"],
                                        generator=_gen(batch) if self.training else None)
        has_depth = p["has_depth"].view(b, 1, 1, 1)
        fake_normals = depth_normals(img["depth"].view(b, k, k), img["alpha"].view(b, k, k), p["spacing"])
        real_normals = depth_normals(p["depth"], p["alpha"], p["spacing"])
        fake = discriminator_image(img["rgb"].transpose(1, 2).reshape(b, 3, k, k), fake_normals * has_depth)
        return fake, discriminator_image(p["rgb"], real_normals * has_depth)

    def after_step(self, step: int) -> dict[str, torch.Tensor]:
        """The training loop's hook after each generator step: the discriminator's update (if any)."""
        return self.adversarial.after_step(step) if self.adversarial is not None else {}

    def auxiliary_state(self) -> dict | None:
        """What the checkpoint keeps besides the generator: the discriminator and its optimiser (or None)."""
        return self.adversarial.state_dict() if self.adversarial is not None else None

    def load_auxiliary_state(self, state: dict) -> None:
        """Restore :meth:`auxiliary_state` on resume."""
        if self.adversarial is not None and state is not None:
            self.adversarial.load_state_dict(state)


def _gen(batch: dict[str, torch.Tensor], stream: int = 0) -> torch.Generator:
    """A CPU generator for the step's torch-side sampling; ``stream`` separates independent draws."""
    return torch.Generator().manual_seed(int(batch["step_seed"]) + stream)


class Mask2TriplaneBatchBuilder:
    """``rng -> host batch`` of the generator (picklable, for ``--workers``): the fields of
    :meth:`SynHead.mask2triplane_item` stacked over ``recipe.batch`` heads, plus ``step_seed`` (int64 scalar) for
    the torch-side sampling of the step (stratified ray samples)."""

    def __init__(self, data: SynHead, cfg: dict[str, Any], recipe: Mask2TriplaneRecipe):
        self.data, self.cfg, self.recipe = data, cfg, recipe
        self.photos = None
        if recipe.adv_photos:
            from training.datasets import CelebAMaskHQ

            self.photos = CelebAMaskHQ(recipe.adv_photos)

    def _photo_batch(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """CelebAMask-HQ photos (human networks only): ``photo_mask (P, 19, Rm, Rm)`` class fractions and
        ``photo_patch_*`` (:func:`photo_patch`) of
        ``adv_photo_batch`` random photos."""
        from backend.labels import NUM_CLASSES
        from training.datasets import onehot_area
        from training.patches import photo_patch

        r = self.recipe
        items = []
        for i in rng.choice(len(self.photos), r.adv_photo_batch, replace=len(self.photos) < r.adv_photo_batch):
            it = self.photos.item(int(i))
            patch = photo_patch(it["rgb"], it["mask"], rng, r.adv_patch, r.adv_min_scale, NUM_CLASSES)
            items.append({"photo_mask": onehot_area(it["mask"], self.cfg["mask_resolution"]),
                          **{"photo_" + k: v for k, v in patch.items()}})
        return {k: np.stack([it[k] for it in items]) for k in items[0]}

    def __call__(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        cfg, recipe = self.cfg, self.recipe
        idx = rng.choice(len(self.data), recipe.batch, replace=len(self.data) < recipe.batch)
        items = [self.data.mask2triplane_item(int(i), rng, cfg["mask_resolution"], cfg["appearance_resolution"],
                                              recipe.points, recipe.near_fraction, recipe.rays_per_view,
                                              num_ray_views=recipe.ray_views,
                                              with_interval=bool(cfg.get("depth_interval_slope", 0.0)),
                                              focus_labels=small_classes(self.data.labels),
                                              focus_fraction=recipe.small_class_rays)
                 for i in idx]
        if recipe.adv_weight > 0:
            for i, it in zip(idx, items):
                it.update(self.data.view_patch(int(i), rng, recipe.adv_patch, recipe.adv_min_scale))
        batch = {k: np.stack([it[k] for it in items]) for k in items[0]}
        if recipe.adv_weight > 0 and self.photos is not None:
            batch.update(self._photo_batch(rng))
        batch["step_seed"] = np.array(int(rng.integers(2 ** 31)), dtype=np.int64)
        return batch


def mask2triplane_batch_to_device(host: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Tensors on ``device`` for :class:`Mask2TriplaneLoss`; ``step_seed`` stays a CPU scalar (it seeds a CPU
    ``torch.Generator``)."""
    return {k: torch.from_numpy(v) if k == "step_seed" else torch.from_numpy(v).to(device) for k, v in host.items()}


def make_batch_fn(data: SynHead, cfg: dict[str, Any], recipe: Mask2TriplaneRecipe, device: torch.device):
    """``rng -> batch`` of tensors on ``device``: :class:`Mask2TriplaneBatchBuilder` then
    :func:`mask2triplane_batch_to_device`."""
    build = Mask2TriplaneBatchBuilder(data, cfg, recipe)
    return lambda rng: mask2triplane_batch_to_device(build(rng), device)


def train(run: TrainRun, ctx: RunContext) -> dict[str, Any]:
    """Train the mask -> tri-plane generator as ``run`` describes (``s3d-train mask2triplane``); returns a summary
    dict (also printed by the CLI)."""
    cfg = get_config(run.profile, "mask2triplane")
    cfg.update(run.config_override or {})
    recipe = Mask2TriplaneRecipe(**{k: v for k, v in (run.recipe_override or {}).items()})
    if run.batch:
        recipe.batch = run.batch
    if run.no_render_loss:
        recipe.rays_per_view = 0
    torch.manual_seed(run.seed)
    data = SynHead(run.data, "train", limit=run.limit)
    for_label_set(cfg, data.labels)  # num_classes (and label_set for a non-human set) from the data
    if recipe.adv_photos and data.labels.subject != "human":
        raise LabelSetError(f"adv_photos are CelebAMask-HQ photos of people; the data's label set is "
                            f"{data.labels.name!r}")
    model = Mask2Triplane(cfg)
    init_info = None
    if run.init_from:
        init_info = warm_start(model, run.init_from, "mask2triplane", expand=Mask2Triplane.WARM_START_EXPANDABLE,
                               fresh=Mask2Triplane.WARM_START_FRESH)
    if model.colour_mapping is not None and (init_info is None or "fresh" in init_info) and not run.resume:
        from training.colour_code_fit import init_colour_code

        init_info = {**(init_info or {}), "colour_code": init_colour_code(model, data, seed=run.seed)}
        print(f"colour code: {init_info['colour_code']}", flush=True)
    model = model.to(ctx.device)
    loss_module: torch.nn.Module = Mask2TriplaneLoss(model, recipe).to(ctx.device)
    if run.init_from and not run.resume and loss_module.adversarial is not None:
        from training.adversarial import warm_start_discriminator

        init_info = {**(init_info or {}), "discriminator": warm_start_discriminator(loss_module.adversarial,
                                                                                   run.init_from)}
    if ctx.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        loss_module = DistributedDataParallel(loss_module, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
                                              find_unused_parameters=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=(0.9, 0.99))
    meta = {"kind": "mask2triplane", "profile": run.profile, "config": cfg, "recipe": asdict(recipe),
            "data": data.describe(), "init_from": init_info, "command": command_line(), "machine": machine_description(),
            "device": str(ctx.device), "device_reason": ctx.device_reason, "world_size": ctx.world_size,
            "seed": run.seed}
    out = Path(run.out)
    with PrefetchedBatches(Mask2TriplaneBatchBuilder(data, cfg, recipe), run.seed, ctx.rank, run.workers) as host:
        state = run_loop(ctx, loss_module, optimizer, lambda step: mask2triplane_batch_to_device(host(step), ctx.device),
                         out, LoopLimits(run.steps, run.minutes, run.checkpoint_minutes, run.log_every),
                         lambda: {"meta": meta}, run.resume, model, "mask2triplane", recipe.ema_decay)
    last = state.history[-1] if state.history else {}
    return {"out": str(out / "checkpoint.pt"), "steps": state.step, "minutes": round(state.elapsed_s / 60, 2),
            "last_losses": last}
