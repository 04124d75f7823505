"""Adversarial training of the mask -> tri-plane generator: a conditional patch discriminator.

pix2pix3D (Deng et al., CVPR 2023, section 3.3) trains its generator as a conditional GAN: a
discriminator sees rendered RGB and semantic images, conditioned on the input label map, and is what
keeps the renders sharp and the samples diverse. Here the discriminator sees GRAF patches
(training/patches.py) of one rendered view per head:

* image channels: RGB (linear, scaled to [-1, 1]) and the patch's surface normals from its depth map
  (:func:`depth_normals`: geometry the loss can see, so grooves and embossed faces cost something);
* condition: the ground-truth label map of the same view at the same points (class fractions), the
  same for the real and the rendered patch, so the discriminator judges "is this a plausible picture of
  these labels".

pix2pix3D also shows its discriminator the rendered semantic probabilities. Here the labels are the
condition instead: beside a one-hot condition, the rendered probabilities would let the discriminator
compare the two, which the semantic cross-entropy already does, rather than look at colour and shape.

Losses are StyleGAN2's (Karras et al., CVPR 2020, appendix B): the non-saturating logistic loss for the
generator, the logistic loss for the discriminator, and R1 (Mescheder et al., ICML 2018, eq. 9) applied
lazily every ``r1_interval`` steps with its weight multiplied by the interval.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchDiscriminator(nn.Module):
    """Conditional discriminator of K x K patches (K a power of two, >= 8).

    Input: ``image (B, C_img, K, K)`` float32 and ``condition (B, C_cond, K, K)`` float32, concatenated;
    a 3x3 stem, then stride-2 3x3 convolutions (leaky ReLU 0.2) down to 4 x 4, and a linear layer.
    Output: logits ``(B,)`` float32 (positive = real).

    Raises:
        ValueError: a patch size that is not a power of two >= 8, or inputs of the wrong shape.
    """

    def __init__(self, image_channels: int, condition_channels: int, patch_size: int = 32,
                 channels: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        if patch_size < 8 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size must be a power of two >= 8, got {patch_size}")
        self.image_channels, self.condition_channels, self.patch_size = image_channels, condition_channels, patch_size
        layers: list[nn.Module] = [nn.Conv2d(image_channels + condition_channels, channels[0], 3, padding=1),
                                   nn.LeakyReLU(0.2)]
        res, cin, i = patch_size, channels[0], 1
        while res > 4:
            cout = channels[min(i, len(channels) - 1)]
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            res, cin, i = res // 2, cout, i + 1
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin * 16, 1)

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        k = self.patch_size
        if image.shape[1:] != (self.image_channels, k, k) or condition.shape[1:] != (self.condition_channels, k, k):
            raise ValueError(f"expected image (B, {self.image_channels}, {k}, {k}) and condition "
                             f"(B, {self.condition_channels}, {k}, {k}), got {tuple(image.shape)} and "
                             f"{tuple(condition.shape)}")
        h = self.body(torch.cat([image, condition], dim=1))
        return self.head(h.flatten(1))[:, 0]


def depth_normals(depth: torch.Tensor, alpha: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
    """Surface normals of a depth patch, in the camera frame (x right, y up, z towards the camera).

    ``depth (B, K, K)`` metres along the viewing axis (row 0 at the top), ``alpha (B, K, K)`` coverage in
    [0, 1], ``spacing (B,)`` metres between neighbouring samples. Central differences where the 3 x 3
    neighbourhood is covered (alpha > 0.5); elsewhere the normal is 0, so silhouettes, where depth jumps,
    give no normal at all. Returns ``(B, 3, K, K)`` float32, unit length where defined.
    """
    d = depth[:, None]
    covered = (alpha[:, None] > 0.5).float()
    inner = -F.max_pool2d(-covered, 3, stride=1, padding=1)  # erosion: the whole 3x3 is covered
    dx = (d[..., :, 2:] - d[..., :, :-2]) / 2.0
    dy = (d[..., :-2, :] - d[..., 2:, :]) / 2.0  # rows go down, y goes up
    dx = F.pad(dx, (1, 1, 0, 0))
    dy = F.pad(dy, (0, 0, 1, 1))
    s = spacing.view(-1, 1, 1, 1)
    # height towards the camera is -depth, so n ~ (d depth/dx, d depth/dy, 1): depth growing to the right
    # (the surface turning away) gives a normal towards +x
    n = torch.cat([dx, dy, s.expand_as(dx)], dim=1)
    n = n / n.norm(dim=1, keepdim=True).clamp(min=1e-8)
    return n * inner


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic generator loss ``mean softplus(-D(fake))`` (Goodfellow et al. 2014)."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss ``mean softplus(D(fake)) + mean softplus(-D(real))``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """R1: ``mean_b ||d D(x_b) / d x_b||^2`` over the real inputs (Mescheder et al., ICML 2018, eq. 9).

    ``real_inputs`` must require grad and ``real_logits`` must come from them; the graph is kept
    (``create_graph``) so the penalty can be back-propagated into the discriminator. Scalar.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


#: Image channels of the discriminator: RGB and normals (:func:`discriminator_image`).
IMAGE_CHANNELS = 6


def discriminator_image(rgb: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """The discriminator's image channels ``(B, 6, P, P)``: RGB ``(B, 3, P, P)`` linear in [0, 1] mapped to
    [-1, 1], then normals ``(B, 3, P, P)`` (zeros where no depth is known, e.g. photos)."""
    return torch.cat([rgb * 2.0 - 1.0, normals], dim=1)


class AdversarialStep:
    """The discriminator and its optimiser, driven by the training loop after each generator step.

    The generator's loss module calls :meth:`generator_term` on the rendered (fake) patch inside its
    forward pass and keeps the real patch; the loop then calls :meth:`after_step`, which updates the
    discriminator on that real patch and the detached fake one (lazy R1 every ``r1_interval`` steps).
    :meth:`state_dict` / :meth:`load_state_dict` go into the run's checkpoint so a resumed run continues
    the same game.

    Images have :data:`IMAGE_CHANNELS` channels, the condition ``num_classes`` (label fractions) and
    ``extra_condition`` more (default 0; e.g. the head's colour code as constant channels).
    """

    def __init__(self, num_classes: int, patch_size: int, lr: float = 2e-4, r1_gamma: float = 1.0,
                 r1_interval: int = 16, device: torch.device | str = "cpu", extra_condition: int = 0):
        self.discriminator = PatchDiscriminator(IMAGE_CHANNELS, num_classes + extra_condition, patch_size).to(device)
        # StyleGAN2's Adam betas for both players, learning rate scaled for lazy regularisation (appendix B)
        c = r1_interval / (r1_interval + 1)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr * c, betas=(0.0, 0.99 ** c))
        self.r1_gamma, self.r1_interval = r1_gamma, r1_interval
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def generator_term(self, fake: torch.Tensor, real: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Non-saturating loss of the fake patches ``(B, C, K, K)`` (gradients reach the generator only);
        remembers the detached fake, the real patches and the condition for :meth:`after_step`."""
        self.discriminator.requires_grad_(False)
        logits = self.discriminator(fake, condition)
        self.discriminator.requires_grad_(True)
        self._pending = (real.detach(), fake.detach(), condition.detach())
        return generator_loss(logits)

    def after_step(self, step: int) -> dict[str, torch.Tensor]:
        """One discriminator update on the patches of the last generator step; returns its loss terms
        (``d_loss``, ``d_real``, ``d_fake`` mean logits, and ``r1`` on lazy steps). Nothing without a
        pending generator step."""
        if self._pending is None:
            return {}
        real, fake, cond = self._pending
        self._pending = None
        with_r1 = self.r1_gamma > 0 and step % self.r1_interval == 0
        if with_r1:
            real = real.requires_grad_(True)
        real_logits = self.discriminator(real, cond)
        fake_logits = self.discriminator(fake, cond)
        loss = discriminator_loss(real_logits, fake_logits)
        terms = {"d_loss": loss.detach(), "d_real": real_logits.mean().detach(), "d_fake": fake_logits.mean().detach()}
        if with_r1:
            r1 = r1_penalty(real_logits, real)
            loss = loss + 0.5 * self.r1_gamma * self.r1_interval * r1
            terms["r1"] = r1.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _all_reduce_grads(self.discriminator)
        self.optimizer.step()
        return terms

    def state_dict(self) -> dict[str, Any]:
        """``{"discriminator", "optimizer"}`` state dicts, for the run's checkpoint."""
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])


def warm_start_discriminator(step: AdversarialStep, source: str) -> bool:
    """Copy the discriminator weights of a compacted checkpoint (``python -m training.compact``, key
    ``discriminator``) or of a training ``checkpoint.pt`` (``auxiliary``) into ``step``'s discriminator, so
    a warm-started adversarial run continues against the discriminator it left (its Adam moments start
    afresh). Returns False, changing nothing, when ``source`` is not a file, holds no discriminator, or one
    of another shape (a different patch size or condition).
    """
    if not Path(source).is_file():
        return False
    ck = torch.load(source, map_location="cpu", weights_only=False)
    state = ck.get("discriminator") or (ck.get("auxiliary") or {}).get("discriminator")
    own = step.discriminator.state_dict()
    if not state or set(state) != set(own) or any(own[k].shape != v.shape for k, v in state.items()):
        return False
    step.discriminator.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return True


def _all_reduce_grads(module: nn.Module) -> None:
    """Average the gradients over the processes of a ``torchrun`` job (no-op in a single process), so every
    rank's discriminator takes the same step."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()
