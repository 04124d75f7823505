"""Function-preserving widening of the sketch U-Net: warm-start a wider :class:`SketchToMask` from a narrower one.

The sketch network under-fits SynHead (training and held-out mIoU agree, docs/models.md), so more
channels are the lever; training a wider network from scratch costs more CPU than a session has. Here the
wider network starts out computing exactly what the narrower one did (Net2Net, Chen, Goodfellow and
Shlens, ICLR 2016, section 2.1 "Net2WiderNet", in its zero-initialised variant): every old weight keeps
its place, each new channel gets a fresh random *incoming* filter and *zero outgoing* weights, so it adds
nothing to the output until training moves its outgoing weights (which receive gradients at once, since
the new channel's activations are non-zero). BatchNorm entries of new channels start at the identity
(weight 1, bias 0, running mean 0, running variance 1).

Channel layout of :class:`backend.models.sketch2mask.SketchToMask` (``ch`` = the 8 widths):
``stem`` convs ``1 -> ch0 -> ch0``; ``encoder[i]`` ``ch[i] -> ch[i+1] -> ch[i+1]``; ``decoder[j]`` (level
``i = 6 - j``) reads ``cat([y (ch[i+1]), skip (ch[i])])`` and writes ``ch[i]`` twice; ``head`` reads ``ch0``;
the style head's first linear layer reads the bottleneck pooled to ``pool x pool`` and flattened channel by
channel (``ch7 * pool^2`` inputs). A test checks that a widened network's logits and style equal the
source's, so a change of that layout cannot pass silently.
"""
from __future__ import annotations

from typing import Sequence

import torch


def _positions(segments_old: Sequence[int], segments_new: Sequence[int], repeat: int = 1) -> torch.Tensor:
    """Indices in the new layout of the old channels, for concatenated segments (each channel ``repeat``
    consecutive entries, as a flattened ``(C, pool, pool)`` tensor has)."""
    idx, base = [], 0
    for old, new in zip(segments_old, segments_new):
        if old > new:
            raise ValueError(f"cannot widen {old} channels to {new}: the new width must not be smaller")
        idx.extend(range(base, base + old * repeat))
        base += new * repeat
    return torch.tensor(idx, dtype=torch.long)


def _layout(ch: Sequence[int], num_classes: int) -> dict[str, tuple[list[int], list[int]]]:
    """Parameter prefix -> (output segments, input segments) in channels, for a conv or BN layer."""
    lay: dict[str, tuple[list[int], list[int]]] = {
        "stem.0": ([ch[0]], [1]), "stem.1": ([ch[0]], []), "stem.3": ([ch[0]], [ch[0]]), "stem.4": ([ch[0]], []),
        "head": ([num_classes], [ch[0]]),
    }
    for i in range(7):
        lay[f"encoder.{i}.0"] = ([ch[i + 1]], [ch[i]])
        lay[f"encoder.{i}.1"] = ([ch[i + 1]], [])
        lay[f"encoder.{i}.3"] = ([ch[i + 1]], [ch[i + 1]])
        lay[f"encoder.{i}.4"] = ([ch[i + 1]], [])
    for j in range(7):
        i = 6 - j
        lay[f"decoder.{j}.0"] = ([ch[i]], [ch[i + 1], ch[i]])
        lay[f"decoder.{j}.1"] = ([ch[i]], [])
        lay[f"decoder.{j}.3"] = ([ch[i]], [ch[i]])
        lay[f"decoder.{j}.4"] = ([ch[i]], [])
    return lay


def widen_sketch2mask_state(old_state: dict[str, torch.Tensor], old_channels: Sequence[int],
                            model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict for ``model`` (a :class:`SketchToMask` whose ``cfg["channels"]`` are each >= the
    corresponding ``old_channels``) that makes it compute what the network of ``old_state`` computed.

    ``old_state``: the narrower network's ``state_dict()`` (float32 tensors). New entries come from
    ``model``'s own (fresh) initialisation, except the inputs of new channels, which are zeroed; see the
    module docstring. Same ``internal_resolution``, classes and style shape are required.

    Raises:
        ValueError: a width shrinks, the number of widths is not 8, or a tensor of ``old_state`` does not
            have the shape the old widths imply.
    """
    new_channels = list(model.cfg["channels"])
    old_channels = list(old_channels)
    if len(old_channels) != 8 or len(new_channels) != 8:
        raise ValueError(f"SketchToMask has 8 channel widths, got {old_channels} -> {new_channels}")
    k = model.num_classes
    old_lay, new_lay = _layout(old_channels, k), _layout(new_channels, k)
    state = {name: t.clone() for name, t in model.state_dict().items()}
    for name, new in state.items():
        old = old_state[name]
        prefix, _, leaf = name.rpartition(".")
        if prefix in new_lay:
            out_idx = _positions(old_lay[prefix][0], new_lay[prefix][0])
            if leaf == "num_batches_tracked":
                state[name] = old.clone()
                continue
            if leaf == "weight" and new.dim() == 4:  # conv: (out, in, kh, kw)
                in_idx = _positions(old_lay[prefix][1], new_lay[prefix][1])
                if old.shape != (len(out_idx), len(in_idx), *new.shape[2:]):
                    raise ValueError(f"{name}: shape {tuple(old.shape)} does not fit widths {old_channels}")
                kept = torch.zeros(new.shape[1], dtype=torch.bool)
                kept[in_idx] = True
                new[:, ~kept] = 0.0  # new input channels contribute nothing
                new[out_idx[:, None], in_idx[None, :]] = old
            else:  # BatchNorm vectors, conv biases: old channels keep their values
                if old.shape != (len(out_idx),):
                    raise ValueError(f"{name}: shape {tuple(old.shape)} does not fit widths {old_channels}")
                if leaf in ("weight", "running_var"):
                    new.fill_(1.0)
                elif leaf in ("bias", "running_mean"):
                    new.zero_()
                new[out_idx] = old
        elif name == "style_head.1.weight":  # Linear over the flattened (ch7, pool, pool) bottleneck
            rep = model.style_pool ** 2
            in_idx = _positions([old_channels[7]], [new_channels[7]], repeat=rep)
            if old.shape != (new.shape[0], len(in_idx)):
                raise ValueError(f"{name}: shape {tuple(old.shape)} does not fit widths {old_channels}")
            new.zero_()
            new[:, in_idx] = old
        else:
            if old.shape != new.shape:
                raise ValueError(f"{name}: shape {tuple(old.shape)} != {tuple(new.shape)}; "
                                 "only channel widths may change")
            state[name] = old.clone()
    return state
