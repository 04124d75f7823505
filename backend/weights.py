"""Bundled weights: ``weights/<name>.safetensors`` plus the model card ``weights/<name>.json``.

The card holds the architecture configuration (the profile, as data), the label set, the training data
and recipe, the measured metrics and the sha256 of the safetensors file (docs/design.md section 3).
Loading checks both files and fails with a message that names the file and what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import re
import os
import tempfile
from pathlib import Path
from typing import Any

from backend.errors import CodedError

#: The weights that ship with the backend (the repository's ``weights/``).
BUNDLED_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def resolve_weights_dir(weights_dir: str | os.PathLike | None = None) -> Path:
    """The one weights-folder rule: ``weights_dir`` when given (not None or empty), else
    ``$S3D_WEIGHTS_DIR`` when set and not empty (read at call time), else :data:`BUNDLED_WEIGHTS_DIR`."""
    if weights_dir:
        return Path(weights_dir)
    return Path(os.environ.get("S3D_WEIGHTS_DIR") or BUNDLED_WEIGHTS_DIR)


#: The default folder as the environment gave it at import (default arguments below).
DEFAULT_WEIGHTS_DIR = resolve_weights_dir()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class WeightsError(CodedError, RuntimeError):
    """Missing, corrupted or mismatched weights. ``code`` is a stable identifier for APIs."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_card(name: str, weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR) -> dict[str, Any]:
    """Read and return the model card ``<weights_dir>/<name>.json``.

    Raises:
        WeightsError: the card is missing or not valid JSON.
    """
    card_path = Path(weights_dir) / f"{name}.json"
    if not card_path.is_file():
        raise WeightsError("weights_missing", f"model card {card_path} not found; reinstall or retrain the '{name}' weights")
    try:
        return json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError("weights_card_invalid", f"model card {card_path} is not readable JSON: {e}") from None


def verify(name: str, weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR) -> dict[str, Any]:
    """Check ``<name>.safetensors`` against the sha256 in its card; return the card.

    Raises:
        WeightsError: missing file or card, or a checksum that does not match (the message names the
            file, the expected and the actual checksum).
    """
    card = read_card(name, weights_dir)
    path = Path(weights_dir) / f"{name}.safetensors"
    if not path.is_file():
        raise WeightsError("weights_missing", f"weights file {path} not found (its card exists); reinstall or retrain")
    expected = card.get("sha256")
    actual = sha256_file(path)
    if expected != actual:
        raise WeightsError(
            "weights_corrupt",
            f"weights file {path} is corrupted or replaced: sha256 {actual}, but its card expects {expected}; "
            "restore the file (git checkout weights/) or retrain",
        )
    return card


def list_weights(weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR) -> dict[str, dict[str, Any]]:
    """Every ``<name>.json`` card in ``weights_dir`` -> ``{"sha256", "ok", "error", "kind", "profile"}``."""
    out: dict[str, dict[str, Any]] = {}
    for card_path in sorted(Path(weights_dir).glob("*.json")):
        name = card_path.stem
        try:
            card = verify(name, weights_dir)
            out[name] = {"ok": True, "sha256": card.get("sha256"), "kind": card.get("kind"),
                         "profile": card.get("profile"), "error": None}
        except WeightsError as e:
            out[name] = {"ok": False, "sha256": None, "kind": None, "profile": None, "error": str(e)}
    return out


def save_weights(state_dict: dict, card: dict[str, Any], name: str, weights_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``<name>.safetensors`` and its card atomically (temporary file + rename); return the card.

    The card's ``sha256`` field is filled in here. Tensors are made contiguous and moved to CPU.
    """
    from safetensors.torch import save_file

    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    fd, tmp = tempfile.mkstemp(dir=weights_dir, suffix=".safetensors.tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)  # replaces the file: the mode is set after it (mkstemp's 0600 would stay otherwise)
        os.chmod(tmp, 0o666 & ~_UMASK)
        card = dict(card, sha256=sha256_file(tmp), name=name)
        write_card(card, name, weights_dir)
        os.replace(tmp, weights_dir / f"{name}.safetensors")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return card


def load_state_dict(name: str, weights_dir: str | os.PathLike = DEFAULT_WEIGHTS_DIR, device: str = "cpu"):
    """Verify and load ``<name>``: returns ``(state_dict, card)``. Raises :class:`WeightsError`."""
    from safetensors.torch import load_file

    card = verify(name, weights_dir)
    try:
        sd = load_file(str(Path(weights_dir) / f"{name}.safetensors"), device=device)
    except Exception as e:  # safetensors raises several types for damaged headers
        raise WeightsError("weights_corrupt", f"weights file {name}.safetensors cannot be read: {e}") from None
    return sd, card


def card_json(card: dict[str, Any]) -> str:
    """A model card as JSON text: indented, with every list of plain numbers on one line (the appearance
    prior's matrix rows would otherwise take a line per number)."""
    text = json.dumps(card, indent=2)
    return re.sub(r"\[\s+([-+0-9.eE]+(?:,\s+[-+0-9.eE]+)*)\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def write_card(card: dict[str, Any], name: str, weights_dir: str | os.PathLike) -> None:
    """Write ``<weights_dir>/<name>.json`` atomically (:func:`card_json`)."""
    atomic_write_text(Path(weights_dir) / f"{name}.json", card_json(card))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the user's usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
