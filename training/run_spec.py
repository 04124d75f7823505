"""What one training run is asked to do: :class:`TrainRun`, the description the trainers
(training/train_mask2triplane.py, training/train_sketch2mask.py) take instead of command-line arguments.

``s3d-train`` builds it from its parsed arguments (:meth:`TrainRun.from_namespace`); tests and scripts build
it directly. The network's size comes from ``profile`` + ``config_override``, the training recipe from the
trainer's recipe dataclass + ``recipe_override``; this class holds the rest: data, output, length, seed.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class TrainRun:
    """One training run of either network.

    Attributes:
        data: SynHead folder (several joined with ``os.pathsep`` are read as one training set).
        out: run folder (``checkpoint.pt``, ``log.jsonl``).
        profile: network profile (``lite`` or ``paper``, backend/models/config.py).
        steps: stop after this many optimiser steps (None: no step limit).
        minutes: stop after this many minutes of training (None: no time limit).
        resume: continue from ``out/checkpoint.pt``.
        init_from: warm start from an earlier run's ``checkpoint.pt`` or a weights folder.
        batch: examples per step (None: the recipe's).
        seed: seed of the parameters and of the batches.
        workers: batch-building processes (0: in the training process).
        limit: use at most this many training samples.
        checkpoint_minutes: minutes between checkpoints.
        log_every: steps between log lines.
        config_override: merged into the profile's config.
        recipe_override: recipe fields.
        no_render_loss: mask -> tri-plane only: 3D point losses only.
        mask_encoder: sketch -> mask only: the mask -> tri-plane checkpoint or weights folder, target of L_SV.
        no_sv: sketch -> mask only: ablation without the style-vector loss.
        no_aug: sketch -> mask only: ablation without augmentation.
    """

    data: str
    out: str
    profile: str = "lite"
    steps: int | None = None
    minutes: float | None = None
    resume: bool = False
    init_from: str | None = None
    batch: int | None = None
    seed: int = 0
    workers: int = 0
    limit: int | None = None
    checkpoint_minutes: float = 4.0
    log_every: int = 10
    config_override: dict[str, Any] | None = None
    recipe_override: dict[str, Any] | None = None
    no_render_loss: bool = False
    mask_encoder: str | None = None
    no_sv: bool = False
    no_aug: bool = False

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> TrainRun:
        """The run of parsed ``s3d-train mask2triplane|sketch2mask`` arguments: the fields ``ns`` has (the
        other network's flags are absent and keep their defaults); other attributes (``device``,
        ``threads``, ``command``) belong to the process, not the run, and are left out."""
        given = vars(ns)
        return cls(**{f.name: given[f.name] for f in fields(cls) if f.name in given})
