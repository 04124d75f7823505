"""``POST /v1/jobs`` bodies -> a validated job request: the input kind, its decoded data, the options,
and an early decode under the upload limits (backend/input_limits.py), so a broken upload fails at once
and not in the queue."""
from __future__ import annotations

import base64
import binascii
import threading
from dataclasses import dataclass
from typing import Any

from backend.pipeline import GenerateOptions, ModelBundle, PipelineError
from backend.server_api import INPUT_KINDS, REQUEST_TIMEOUT_S, ApiError

#: Uploads decoded at once by request threads (each up to backend.input_limits.MAX_DECODE_PIXELS, about
#: 0.8 GB at the cap); the worker decodes one more. Bounds the memory that image decoding can take.
MAX_DECODES_IN_FLIGHT = 1


@dataclass
class JobRequest:
    """A checked job: ``source`` is the stroke dict or the decoded PNG bytes; ``name`` at most 200 chars."""

    kind: str
    source: Any
    options: GenerateOptions
    name: str


def parse_job_request(body: Any, models: ModelBundle | None, load_error: dict | None,
                      decodes: threading.BoundedSemaphore) -> JobRequest:
    """Validate a POST /v1/jobs body and decode its upload once (``decodes`` bounds concurrent decodes).

    Raises:
        ApiError: 400 ``bad_request`` / ``bad_input`` / ``bad_option`` / intake codes, 503 weights codes
            or ``busy_decoding``.
    """
    if models is None:
        err = load_error or {"code": "weights_missing", "message": "the networks are not loaded"}
        raise ApiError(503, err["code"], err["message"])
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        raise ApiError(400, "bad_request", "the body must be {\"input\": {\"kind\", \"data\"}, \"options\": {...}}")
    inp = body["input"]
    kind = inp.get("kind")
    if kind not in INPUT_KINDS:
        raise ApiError(400, "bad_input", f"input.kind must be one of {list(INPUT_KINDS)}, not {kind!r}")
    extra = set(body) - {"input", "options"}
    if extra:
        raise ApiError(400, "bad_request", f"unknown top-level keys {sorted(extra)}")
    options = _options(body.get("options", {}), kind)
    source = _decode_data(kind, inp.get("data"))
    if kind != "mask_png" and options.subject == models.subject and models.sketch2mask is None:
        err = models.sketch2mask_error or {"code": "weights_missing", "message": "no sketch network"}
        raise ApiError(503, err["code"], err["message"])
    _check_upload(kind, source, decodes, options.subject)
    name = inp.get("name") if isinstance(inp.get("name"), str) and inp.get("name") else kind
    return JobRequest(kind, source, options, name[:200])


def _options(raw: Any, kind: str) -> GenerateOptions:
    """``options`` of the body -> :class:`GenerateOptions` (``from_mask`` follows the input kind)."""
    if not isinstance(raw, (dict, type(None))):
        raise ApiError(400, "bad_option", "options must be a JSON object such as {\"seed\": 0}")
    opts = dict(raw or {})
    if "from_mask" in opts:
        raise ApiError(400, "bad_option", "set input.kind to 'mask_png' instead of options.from_mask")
    opts["from_mask"] = kind == "mask_png"
    try:
        return GenerateOptions.from_dict(opts)
    except PipelineError as e:
        raise ApiError(400, e.code, str(e)) from None
    except TypeError as e:
        raise ApiError(400, "bad_option", f"options are invalid: {e}") from None


def _decode_data(kind: str, data: Any) -> Any:
    """``input.data``: a stroke dict as it is, else base64 -> bytes."""
    if kind == "strokes":
        if not isinstance(data, dict):
            raise ApiError(400, "bad_input", "input.data must be a stroke JSON object for kind 'strokes'")
        return data
    if not isinstance(data, str):
        raise ApiError(400, "bad_input", f"input.data must be a base64 string for kind '{kind}'")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_input", "input.data is not valid base64") from None


def _check_upload(kind: str, source: Any, decodes: threading.BoundedSemaphore, subject: str = "human") -> None:
    """Decode the upload once under the input limits, at most ``MAX_DECODES_IN_FLIGHT`` at a time; a mask
    is read in the label set of the job's ``subject`` (seg2cat for cats)."""
    from backend.input_limits import load_mask_checked, load_sketch_checked
    from backend.labels import label_set
    from backend.models.loading import SUBJECT_WEIGHTS
    from backend.sketch.intake import IntakeError

    if not decodes.acquire(timeout=REQUEST_TIMEOUT_S):
        raise ApiError(503, "busy_decoding", f"{MAX_DECODES_IN_FLIGHT} uploads are being decoded; retry in a "
                       "few seconds")
    try:  # early check under the decode limits, so a broken upload fails now and not in the queue
        if kind == "mask_png":
            load_mask_checked(source, label_set(SUBJECT_WEIGHTS[subject]["label_set"]))
        else:
            load_sketch_checked(source)
    except IntakeError as e:
        raise ApiError(400, e.code, str(e)) from None
    finally:
        decodes.release()
