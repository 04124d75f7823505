"""Training of the sketch -> mask U-Net (S3D section 3.3) on SynHead sketches.

L = L_SV + L_CE + L_Dice, where L_SV is the MSE between the U-Net's bottleneck style and the geometry
w+ of the trained (frozen) mask encoder on the ground-truth mask. Augmentation (training/augment.py):
stroke-level changes on the clean strokes, S3D's keep / dilate-3 / erode-7, random framing. Ablations:
``--no-sv`` drops L_SV (S3D Table 2), ``--no-aug`` trains on the stored sketches unchanged (Table 3).

The network serves the data's label set (``data.labels``: 19 CelebAMask-HQ classes for SynHead, six
seg2cat classes for SynCat): the config's ``num_classes`` and ``label_set`` are set from it
(:func:`backend.models.config.for_label_set`), the small classes the recipe weights up are that set's
(:func:`training.losses.small_classes`), and the mask encoder and any ``--init-from`` run must serve the
same set (:class:`backend.models.config.LabelSetError` otherwise).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.labels import CELEBAMASK_HQ
from backend.models.config import LabelSetError, for_label_set, get_config
from backend.models.mask2triplane import Mask2Triplane
from backend.models.sketch2mask import SketchToMask
from training.augment import augmented_sketch
from training.datasets import DataError, SynHead, onehot_area, open_sketch_data, resize_grey
from training.losses import sketch_to_mask_loss, small_class_weights, small_classes
from training.loop import (LoopLimits, RunContext, command_line, machine_description, read_parameters, run_loop,
                           warm_start)
from training.prefetch import PrefetchedBatches
from training.run_spec import TrainRun
from training.synhead.drawing_styles import NEW_STYLES, check_style_names
from training.widen import widen_sketch2mask_state


@dataclass
class SketchToMaskRecipe:
    """Hyper-parameters of one run (recorded in checkpoints and model cards)."""

    batch: int = 12
    lr: float = 2e-3
    sv_weight: float = 1.0
    augment: bool = True
    stroke_prob: float = 0.5
    framing_prob: float = 0.5
    small_class_weight: float = 1.0  # cross-entropy weight of the small classes (training/losses.py; 1 = S3D's plain CE)
    # random framing (scale, shift as a fraction of the image): real sketches framed by their ink's box
    # (wide hair, long necks) put the face smaller or lower than SynHead's canonical framing
    framing_scale_min: float = 0.92
    framing_scale_max: float = 1.08
    framing_shift: float = 0.04
    # shading marks on the skin (training/augment.py face_marks): lines on a face need not mean hair
    face_marks_prob: float = 0.0
    # left-right mirror image with the left/right labels swapped (training/augment.py mirror)
    mirror_prob: float = 0.0
    # stroke re-draws with the eyes drawn closed, one arc each (training/augment.py close_eyes)
    closed_eyes_prob: float = 0.0
    # stroke re-draws with the irises left out: eyes as empty outlines (training/augment.py augment_strokes)
    empty_eyes_prob: float = 0.0
    # glasses strokes never dropped in stroke re-draws: no glasses drawn means no glasses
    keep_accessory_strokes: bool = False
    # stroke re-draws made rough like SynHead's rough style (training/augment.py augmented_sketch)
    rough_redraw_prob: float = 0.0
    # sketches re-drawn on the fly in the styles of real drawings (training/synhead/drawing_styles.py: portrait,
    # hatched, marker, strands) from the head's strokes, render and labels; 0 = off
    new_style_prob: float = 0.0
    new_styles: list[str] = field(default_factory=lambda: list(NEW_STYLES))
    # cats only (training/syncat/quick_drawings.py): stroke re-draws as a whole cat with the head small at one
    # end (the body is background in the mask), and faces of a few marks (dot eyes); 0 = off
    body_prob: float = 0.0
    minimal_marks_prob: float = 0.0
    # exponential moving average of the weights (training/loop.py run_loop); export and eval use it; 0 = none
    ema_decay: float = 0.0
    # the U-Net's forward pass under bfloat16 autocast (the loss in float32): 1.4-1.6x faster steps on a CPU
    # with AVX-512 BF16 (benchmarks/cpu_training_speed.py), slower on one without
    bf16: bool = False

    def __post_init__(self) -> None:
        """Check the drawing style names (ValueError for an unknown one) and keep them as a list."""
        self.new_styles = check_style_names(self.new_styles)


def load_mask_encoder(path: str | Path, device: torch.device) -> tuple[Mask2Triplane, dict[str, Any]]:
    """The frozen mask -> tri-plane model whose geometry w+ is the L_SV target, from a training
    checkpoint (``checkpoint.pt``) or a weights folder holding ``mask2triplane_lite``
    (:func:`training.loop.read_parameters`; its info is recorded in the card).

    Raises:
        DataError: the path holds neither.
    """
    try:
        state, cfg, info = read_parameters(path, "mask2triplane")
    except FileNotFoundError:
        raise DataError(f"--mask-encoder {path} is neither a checkpoint file nor a weights folder") from None
    model = Mask2Triplane(cfg)
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model.to(device), info


class SketchToMaskLoss(torch.nn.Module):
    """``forward(batch) -> {"loss", "ce", "dice", "sv"}`` (S3D's loss), for DistributedDataParallel."""

    def __init__(self, net: SketchToMask, recipe: SketchToMaskRecipe):
        super().__init__()
        self.net = net
        self.recipe = recipe
        weights = small_class_weights(net.cfg["num_classes"], recipe.small_class_weight,
                                      classes=small_classes(net.labels))
        self.register_buffer("class_weights", weights if weights is not None else torch.ones(net.cfg["num_classes"]))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        sketch = batch["sketch"]
        with torch.autocast(sketch.device.type, dtype=torch.bfloat16, enabled=self.recipe.bf16):
            logits, style = self.net(sketch)
        return sketch_to_mask_loss(logits.float(), style.float(), batch["mask"], batch.get("target_ws"),
                                   self.recipe.sv_weight, self.class_weights)


class SketchBatchBuilder:
    """``rng -> host batch`` of the sketch network (picklable, for ``--workers``): ``sketch (B, 1, r, r)`` float32 in
    [0, 1] (1 = paper) and ``mask (B, r, r)`` int64 label ids at the U-Net's internal resolution ``r``, augmented by
    the recipe (training/augment.py, with the data's label set ``data.labels``, human when the reader has none);
    with ``enc_res``, ``mask_area (B, K, e, e)`` float32 (K classes of that set), the class fractions of the mask
    at the mask encoder's resolution ``e`` (input of the L_SV target, S3D section 3.3)."""

    def __init__(self, data: SynHead, cfg: dict[str, Any], recipe: SketchToMaskRecipe, enc_res: int | None):
        self.data, self.recipe, self.enc_res = data, recipe, enc_res
        self.res = cfg["internal_resolution"]
        self.labels = getattr(data, "labels", CELEBAMASK_HQ)

    @classmethod
    def for_encoder(cls, data: SynHead, cfg: dict[str, Any], recipe: SketchToMaskRecipe,
                    encoder: Mask2Triplane | None) -> "SketchBatchBuilder":
        """The builder whose ``mask_area`` feeds ``encoder`` (none without an encoder: no L_SV)."""
        return cls(data, cfg, recipe, encoder.cfg["mask_resolution"] if encoder is not None else None)

    def __call__(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        recipe, r = self.recipe, self.res
        idx = rng.choice(len(self.data), recipe.batch, replace=len(self.data) < recipe.batch)
        sketches, masks, fracs = [], [], []
        for i in idx:
            item = self.data.sketch_item(int(i))
            if recipe.augment:
                sk, mk = augmented_sketch(item, rng, recipe.stroke_prob, recipe.framing_prob,
                                          (recipe.framing_scale_min, recipe.framing_scale_max), recipe.framing_shift,
                                          recipe.face_marks_prob, recipe.mirror_prob, recipe.closed_eyes_prob,
                                          recipe.empty_eyes_prob, recipe.keep_accessory_strokes,
                                          recipe.rough_redraw_prob, recipe.new_style_prob, recipe.new_styles,
                                          labels=self.labels, body_prob=recipe.body_prob,
                                          minimal_marks_prob=recipe.minimal_marks_prob)
            else:
                sk, mk = item["sketch"], item["mask"]
            k = self.labels.num_classes
            sketches.append(resize_grey(sk, r))
            masks.append(onehot_area(mk, r, k).argmax(0))
            if self.enc_res is not None:
                fracs.append(onehot_area(mk, self.enc_res, k))
        batch = {"sketch": np.stack(sketches)[:, None], "mask": np.stack(masks).astype(np.int64)}
        if fracs:
            batch["mask_area"] = np.stack(fracs)
        return batch


def sketch_batch_to_device(host: dict[str, np.ndarray], device: torch.device,
                           encoder: Mask2Triplane | None) -> dict[str, torch.Tensor]:
    """Tensors on ``device`` for :class:`SketchToMaskLoss`: ``sketch``, ``mask`` and, with an encoder,
    ``target_ws (B, nw, w_dim)``, the geometry w+ of the ground-truth mask (the L_SV target)."""
    batch = {"sketch": torch.from_numpy(host["sketch"]).to(device), "mask": torch.from_numpy(host["mask"]).to(device)}
    if encoder is not None:
        with torch.no_grad():
            batch["target_ws"] = encoder.geometry_ws(torch.from_numpy(host["mask_area"]).to(device))
    return batch


def train(run: TrainRun, ctx: RunContext) -> dict[str, Any]:
    """Train the sketch -> mask U-Net as ``run`` describes (``s3d-train sketch2mask``); returns a summary dict."""
    cfg = get_config(run.profile, "sketch2mask")
    cfg.update(run.config_override or {})
    recipe = SketchToMaskRecipe(**(run.recipe_override or {}))
    if run.batch:
        recipe.batch = run.batch
    if run.no_sv:
        recipe.sv_weight = 0.0
    if run.no_aug:
        recipe.augment = False
    torch.manual_seed(run.seed)
    data = open_sketch_data(run.data, "train", limit=run.limit)
    labels = getattr(data, "labels", CELEBAMASK_HQ)
    for_label_set(cfg, labels)  # num_classes (and label_set for a non-human set) from the data
    encoder, enc_info = (None, None)
    if recipe.sv_weight > 0:
        if not run.mask_encoder:
            raise DataError("L_SV needs the trained mask encoder: pass --mask-encoder RUN/checkpoint.pt or a weights "
                            "folder (or --no-sv for the ablation without it)")
        encoder, enc_info = load_mask_encoder(run.mask_encoder, ctx.device)
        if encoder.labels.name != labels.name:
            raise LabelSetError(f"--mask-encoder {run.mask_encoder} serves label set {encoder.labels.name!r}, the "
                                f"data {labels.name!r}: use the mask -> tri-plane run trained on this data")
        shape = (encoder.cfg["num_ws_geometry"], encoder.cfg["w_dim"])
        if shape != (cfg["num_ws_geometry"], cfg["w_dim"]):
            raise DataError(f"mask encoder geometry w+ is {shape}, the U-Net style head is "
                            f"{(cfg['num_ws_geometry'], cfg['w_dim'])}: use the same profile for both")
    net = SketchToMask(cfg)
    init_info = None
    if run.init_from:
        # a wider --config-override "channels" than the source's is grown function-preservingly (training/widen.py)
        init_info = warm_start(net, run.init_from, "sketch2mask", refit=SketchToMask.WARM_START_REFIT,
                               widen=widen_sketch2mask_state)
    net = net.to(ctx.device).to(memory_format=torch.channels_last)
    loss_module: torch.nn.Module = SketchToMaskLoss(net, recipe).to(ctx.device)
    if ctx.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        loss_module = DistributedDataParallel(loss_module, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
                                              find_unused_parameters=recipe.sv_weight == 0)  # style head idle
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr, betas=(0.9, 0.99))
    meta = {"kind": "sketch2mask", "profile": run.profile, "config": cfg, "recipe": asdict(recipe),
            "data": data.describe(), "mask_encoder": enc_info, "init_from": init_info, "command": command_line(),
            "machine": machine_description(), "device": str(ctx.device), "device_reason": ctx.device_reason,
            "world_size": ctx.world_size, "seed": run.seed}
    out = Path(run.out)
    build = SketchBatchBuilder.for_encoder(data, cfg, recipe, encoder)
    with PrefetchedBatches(build, run.seed, ctx.rank, run.workers) as host:
        state = run_loop(ctx, loss_module, optimizer, lambda step: sketch_batch_to_device(host(step), ctx.device, encoder),
                         out, LoopLimits(run.steps, run.minutes, run.checkpoint_minutes, run.log_every),
                         lambda: {"meta": meta}, run.resume, net, "sketch2mask", recipe.ema_decay)
    last = state.history[-1] if state.history else {}
    return {"out": str(out / "checkpoint.pt"), "steps": state.step, "minutes": round(state.elapsed_s / 60, 2),
            "last_losses": last}
