"""The worker's jobs: one dataclass per kind, built by the add-on and run by the worker (``ml_core.worker``).

Torch-free and numpy-free, so Blender's side imports it as it imports :mod:`ml_core.clip`. A job crosses the process
boundary as one JSON object, ``{"kind": KIND, FIELD: VALUE, ..., "options": {OPTION: VALUE, ...}}``
(:meth:`Job.to_dict` / :func:`job_from_dict`). Every job checks itself when it is made (field types, then bounds), so
a bad job fails with one :class:`~ml_core.errors.FommError` line on whichever side builds it: in the add-on before a
worker starts, and again in the worker for jobs that come from elsewhere.

The option fields are the keyword arguments of :func:`ml_core.extract` / :func:`ml_core.animate` that a job may set,
with the same names and defaults (``tests/ml_core/test_jobs.py`` holds them to those signatures), so renaming an
argument there fails a test instead of a worker at run time.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from ml_core.errors import FommError

DTYPES = ("fp32", "bf16")  # inference precision (extract, animate)
MODES = ("relative", "absolute")  # how the preview moves the source (animate)
CROP_MODES = ("auto", "follow", "steady", "full")  # named crops; else [x, y, size] pixels
MAX_BATCH_SIZE = 1024  # far above what fits a GPU at 256 px; a bigger number is a typo
MAX_STEP = 1000
DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)\Z", re.IGNORECASE)


def _bad(kind: str, where: str, rule: str, value: Any) -> FommError:
    shown = json.dumps(value, default=str)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return FommError(f"the {kind} job's {where} must be {rule}, got {shown}")


# --------------------------------------------------------------------------------------------------
# Field types: what JSON may carry for each annotation
# --------------------------------------------------------------------------------------------------

_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", type(None): "null"}


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)  # str, or a nested options dataclass


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is list:
        return "a list of " + {str: "strings", int: "whole numbers"}.get(typing.get_args(hint)[0], "values")
    if origin is dict or hint is dict:
        return "an object"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _check_types(obj: Any, kind: str, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not _matches(value, hints[f.name]):
            raise _bad(kind, prefix + f.name, _describe(hints[f.name]), value)


def _check_range(kind: str, where: str, value: int | float | None, low: float, high: float | None = None) -> None:
    if value is None:
        return
    if not (math.isfinite(value) and value >= low and (high is None or value <= high)):
        rule = f"between {low:g} and {high:g}" if high is not None else f"{low:g} or more"
        raise _bad(kind, where, rule, value)


def _check_choice(kind: str, where: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _bad(kind, where, "one of " + ", ".join(choices), value)


def _check_crop(kind: str, crop: str | list[int]) -> None:
    if isinstance(crop, str):
        _check_choice(kind, "option crop", crop, CROP_MODES)
    elif len(crop) != 3 or crop[2] < 1 or min(crop[:2]) < 0:
        raise _bad(kind, "option crop", "auto, follow, steady, full or [x, y, size] pixels (size 1 or more)", crop)


# --------------------------------------------------------------------------------------------------
# Options: keyword arguments of extract / animate
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractOptions:
    """Keyword arguments of :func:`ml_core.extraction.extract` that a job sets (same names, same defaults)."""

    KIND: ClassVar[str] = "extract"
    crop: str | list[int] = "auto"
    start: int | None = None
    end: int | None = None
    step: int = 1
    reference_frame: str | int = "auto"
    smooth: dict | None = None
    batch_size: int = 16
    dtype: str = "fp32"

    def __post_init__(self) -> None:
        k = self.KIND
        _check_types(self, k, "option ")
        _check_crop(k, self.crop)
        _check_range(k, "option start", self.start, 0)
        _check_range(k, "option end", self.end, 1)
        _check_range(k, "option step", self.step, 1, MAX_STEP)
        if isinstance(self.reference_frame, str):
            _check_choice(k, "option reference_frame", self.reference_frame, ("auto",))
        else:
            _check_range(k, "option reference_frame", self.reference_frame, 0)
        _check_range(k, "option batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_choice(k, "option dtype", self.dtype, DTYPES)


@dataclass(frozen=True)
class AnimateOptions:
    """Keyword arguments of :func:`ml_core.animation.animate` that a job sets (same names, same defaults)."""

    KIND: ClassVar[str] = "animate"
    mode: str = "relative"
    adapt_movement_scale: bool = True
    batch_size: int = 8
    dtype: str = "fp32"
    fps: float | None = None
    crop: str | list[int] = "full"
    strict: bool = False

    def __post_init__(self) -> None:
        k = self.KIND
        _check_types(self, k, "option ")
        _check_choice(k, "option mode", self.mode, MODES)
        _check_range(k, "option batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_choice(k, "option dtype", self.dtype, DTYPES)
        if self.fps is not None and not (math.isfinite(self.fps) and 0 < self.fps < 1000):
            raise _bad(k, "option fps", "a frame rate above 0 and below 1000", self.fps)
        _check_crop(k, self.crop)


# --------------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Job:
    """What every job kind shares: ``kind`` and the JSON round trip. ``REQUIRED``: fields that may not be empty."""

    KIND: ClassVar[str] = ""
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        missing = [name for name in self.REQUIRED if not getattr(self, name)]
        if missing:
            raise FommError(f"the {self.KIND} job is missing {', '.join(missing)}")
        _check_types(self, self.KIND)
        self.check()

    def check(self) -> None:
        """Bounds beyond the field types (each kind adds its own)."""

    def to_dict(self) -> dict[str, Any]:
        """The job as the JSON object the worker reads."""
        return {"kind": self.KIND, **asdict(self)}

    def to_json(self) -> str:
        """One line of JSON (the worker reads a job from the first line of its stdin)."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True, kw_only=True)
class ModelJob(Job):
    """A job that loads a model: checkpoint and config (None: the embedded default model), device."""

    checkpoint: str | None = None
    config: str | dict | None = None
    device: str = "auto"

    def check(self) -> None:
        if not DEVICE.match(self.device):
            raise _bad(self.KIND, "device", "auto, cpu, cuda, cuda:N or mps", self.device)


@dataclass(frozen=True, kw_only=True)
class ExtractJob(ModelJob):
    """Motion from a driving video into a clip ``output`` (.npz); result ``clip``, ``frames``, ``fps``, ``num_kp``,
    ``reference_frame``."""

    KIND: ClassVar[str] = "extract"
    REQUIRED: ClassVar[tuple[str, ...]] = ("video", "output")
    video: str
    output: str
    options: ExtractOptions = field(default_factory=ExtractOptions)


@dataclass(frozen=True, kw_only=True)
class AnimateJob(ModelJob):
    """The neural preview: ``source`` image animated by ``clip`` (a clip .npz or a video) into ``output`` (a folder
    ending in a separator, or a video file); result ``output``, ``frames`` and the other numbers animate returns."""

    KIND: ClassVar[str] = "animate"
    REQUIRED: ClassVar[tuple[str, ...]] = ("source", "clip", "output")
    source: str
    clip: str
    output: str
    options: AnimateOptions = field(default_factory=AnimateOptions)


@dataclass(frozen=True, kw_only=True)
class DetectImagesJob(ModelJob):
    """The keypoint detector on still images (calibration renders) into ``output`` (.npz); result ``output``,
    ``count``, ``num_kp``."""

    KIND: ClassVar[str] = "detect-images"
    REQUIRED: ClassVar[tuple[str, ...]] = ("images", "output")
    images: list[str]
    output: str

    def check(self) -> None:
        super().check()
        if not all(self.images):
            raise _bad(self.KIND, "images", "a list of paths", self.images)


@dataclass(frozen=True, kw_only=True)
class ProbeJob(Job):
    """What the worker can run; result ``python``, ``executable``, ``ml_core``, ``torch`` (null if missing),
    ``devices``."""

    KIND: ClassVar[str] = "probe"


JOB_TYPES: dict[str, type[Job]] = {cls.KIND: cls for cls in (ExtractJob, AnimateJob, DetectImagesJob, ProbeJob)}
KINDS = tuple(JOB_TYPES)


def _options_type(cls: type[Job]) -> type | None:
    hints = typing.get_type_hints(cls)
    return hints.get("options")


def job_from_dict(data: Any) -> Job:
    """The typed job from its JSON object, checked: kind, required fields, unknown fields and options, types, bounds."""
    if not isinstance(data, dict):
        raise FommError("the worker job must be a JSON object")
    kind = data.get("kind")
    cls = JOB_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise FommError(f"unknown worker job kind {kind!r}: use one of {', '.join(KINDS)}")
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    missing = [name for name in cls.REQUIRED if not data.get(name)] + sorted(required - set(cls.REQUIRED) - set(data))
    if missing:
        raise FommError(f"the {kind} job is missing {', '.join(missing)}")
    unknown = sorted(set(data) - names - {"kind", "options"})
    if unknown:
        raise FommError(f"the {kind} job has unknown field(s) {', '.join(unknown)}: use {', '.join(sorted(names))}")
    values = {name: data[name] for name in names if name in data}
    options_cls = _options_type(cls)
    opts = data.get("options", {})
    if not isinstance(opts, dict):
        raise FommError("the job's options must be a JSON object")
    if options_cls is None:
        if opts:
            raise FommError(f"the {kind} job takes no options, got {', '.join(sorted(opts))}")
    else:
        allowed = sorted(f.name for f in fields(options_cls))
        bad = sorted(set(opts) - set(allowed))
        if bad:
            raise FommError(f"unknown option(s) {', '.join(bad)} for the {kind} job: use {', '.join(allowed)}")
        values["options"] = options_cls(**opts)
    return cls(**values)


def job_from_json(text: str) -> Job:
    """The typed job from its JSON text (:func:`job_from_dict`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FommError(f"the worker job is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return job_from_dict(data)
