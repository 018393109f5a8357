"""Model configuration, construction and checkpoint I/O.

Checkpoints accepted:

- the authors' ``.pth.tar`` files (a dict with ``kp_detector``, ``generator``, ``discriminator``, ``optimizer_*``,
  ``epoch``), read with ``torch.load(weights_only=True)`` only: a pickle that would run code is refused, never run;
- the project's own format: one ``.safetensors`` file whose tensors are prefixed ``kp_detector.``, ``generator.``,
  ``discriminator.`` and whose metadata embeds the configuration (``python -m ml_core convert`` writes it).

The configuration uses the authors' YAML layout (``model_params`` with ``common_params``, ``kp_detector_params``,
``generator_params`` + ``dense_motion_params``, ``discriminator_params``; ``dataset_params.frame_shape``). When none
is given or embedded, the shipped configuration whose parameter shapes match the checkpoint exactly is used.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ml_core.errors import FommError
from ml_core.fileio import atomic_path, check_output, sha256_file
from ml_core.modules import KPDetector, MultiScaleDiscriminator, OcclusionAwareGenerator

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default"
DEFAULT_CHECKPOINT = DEFAULT_MODEL_DIR / "model.safetensors"
MODULES = ("kp_detector", "generator", "discriminator")
SAFETENSORS_FORMAT = "fomm-ml-core"
SAFETENSORS_VERSION = "1"
# Shipped configurations, in the order auto-detection prefers when several share one architecture.
RELEASED = ("vox-256", "vox-adv-256", "taichi-256", "taichi-adv-256", "mgif-256", "bair-256", "fashion-256", "nemo-256")


# ----------------------------------------------------------------------------------------------- configuration
def available_configs() -> list[str]:
    """Names of the shipped configurations (``ml_core/configs/*.yaml``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(config: str | os.PathLike | dict) -> dict:
    """A configuration from a dict, a YAML/JSON path, or the name of a shipped one (e.g. ``"vox-256"``)."""
    if isinstance(config, dict):
        cfg = copy.deepcopy(config)
        source = "the given configuration"
    else:
        path = Path(config)
        if not path.exists() and (CONFIG_DIR / f"{config}.yaml").exists():
            path = CONFIG_DIR / f"{config}.yaml"
        if not path.exists():
            raise FommError(
                f"config not found: {config} (give a YAML/JSON file or one of: {', '.join(available_configs())})"
            )
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise FommError(
                f"config {path} is {path.stat().st_size} bytes, more than a configuration needs "
                f"({MAX_CONFIG_BYTES}): give the YAML the model was trained with"
            )
        try:
            text = path.read_text(encoding="utf-8")
            cfg = json.loads(text) if path.suffix.lower() == ".json" else safe_yaml(text, str(path))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
            raise FommError(f"config {path} is not readable YAML/JSON: {str(exc).splitlines()[0]}") from None
        except RecursionError:
            raise FommError(f"config {path} is nested too deeply to be a configuration") from None
        source = str(path)
    validate_config(cfg, source)
    return cfg


MAX_CONFIG_BYTES = 1 << 20  # the authors' configs are ~2 KB
MAX_YAML_NODES = 100_000  # values once aliases are expanded; the authors' configs have about 150


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document that expands to more than MAX_YAML_NODES values.

    Aliases (``*name``) repeat a node without copying it, so a 2 KB "billion laughs" file composes quickly
    and only explodes later when the configuration is copied or hashed; the expanded size is counted on
    the composed graph (each node once, aliases multiplying), before anything is built from it.
    """

    def construct_document(self, node: Any) -> Any:
        sizes: dict[int, int] = {}

        def size(n: Any, depth: int = 0) -> int:
            key = id(n)
            if key in sizes:
                if sizes[key] < 0:
                    raise FommError(f"{self.name} refers to itself through an alias: not a configuration")
                return sizes[key]
            if depth > 200:
                raise FommError(f"{self.name} is nested too deeply to be a configuration")
            sizes[key] = -1
            total = 1
            if isinstance(n, yaml.SequenceNode):
                total += sum(size(c, depth + 1) for c in n.value)
            elif isinstance(n, yaml.MappingNode):
                total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
            sizes[key] = total
            if total > MAX_YAML_NODES:
                raise FommError(
                    f"{self.name} expands to more than {MAX_YAML_NODES} values through its YAML "
                    "aliases (*name): refused (an exponential 'billion laughs' file?)"
                )
            return total

        size(node)
        return super().construct_document(node)


def safe_yaml(text: str, name: str = "config") -> Any:
    """``yaml.safe_load`` with a bound on the expanded size (see :class:`_BoundedLoader`)."""
    loader = _BoundedLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# Bounds on the numbers a configuration gives the network builders (far above any published model: vox-256 uses
# block_expansion 32-64, max_features 512-1024, 10 keypoints, 256 pixels).
_INT_LIMITS = {
    "num_kp": 256,
    "num_channels": 4,
    "block_expansion": 1024,
    "max_features": 8192,
    "num_blocks": 16,
    "num_down_blocks": 8,
    "num_bottleneck_blocks": 64,
    "pad": 16,
}
MAX_IMAGE_SIZE = 2048


def _check_params(node: Any, where: str, source: str) -> None:
    """Every number in ``model_params`` finite and of the right kind; the sizes within :data:`_INT_LIMITS`."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}"
            limit = _INT_LIMITS.get(str(key))
            if limit is not None and not isinstance(value, dict):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise FommError(f"{source}: {here} must be a whole number, got {value!r}")
                if not 1 <= value <= limit:
                    raise FommError(f"{source}: {here} must be from 1 to {limit}, got {value}")
            else:
                _check_params(value, here, source)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_params(value, f"{where}[{i}]", source)
    elif isinstance(node, float) and not math.isfinite(node):
        raise FommError(f"{source}: {where} must be a finite number, got {node!r}")
    elif node is not None and not isinstance(node, bool | int | float | str):
        raise FommError(f"{source}: {where} has an unsupported value of type {type(node).__name__}")


def _check_frame_shape(cfg: dict, source: str) -> None:
    ds = cfg.get("dataset_params")
    if ds is None:
        return
    if not isinstance(ds, dict):
        raise FommError(f"{source}: dataset_params must be a mapping")
    for key in ("frame_shape", "image_shape"):
        shape = ds.get(key)
        if shape is None:
            continue
        ok = (
            isinstance(shape, list | tuple)
            and len(shape) in (2, 3)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
        )
        if not ok:
            raise FommError(f"{source}: dataset_params.{key} must be [height, width, channels], got {shape!r}")
        if not 16 <= shape[0] <= MAX_IMAGE_SIZE or shape[0] != shape[1]:
            raise FommError(
                f"{source}: dataset_params.{key} must be a square from 16 to {MAX_IMAGE_SIZE} pixels, got {list(shape)}"
            )


def validate_config(cfg: Any, source: str = "config") -> None:
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_params"), dict):
        raise FommError(
            f"{source} has no 'model_params' section: use the authors' layout "
            "(model_params: common_params, kp_detector_params, generator_params, discriminator_params)"
        )
    mp = cfg["model_params"]
    for key in ("common_params", "kp_detector_params", "generator_params"):
        if not isinstance(mp.get(key), dict):
            raise FommError(f"{source} lacks model_params.{key}")
    if "num_kp" not in mp["common_params"]:
        raise FommError(f"{source} lacks model_params.common_params.num_kp")
    _check_params(mp, "model_params", source)
    _check_frame_shape(cfg, source)


def image_size_of(cfg: dict) -> int:
    """Square input side the model expects (``dataset_params.frame_shape`` or ``image_shape``; default 256)."""
    ds = cfg.get("dataset_params") or {}
    shape = ds.get("frame_shape") or ds.get("image_shape") or [256, 256, 3]
    return int(shape[0])


def config_hash(cfg: dict) -> str:
    """Stable hash of what defines the networks (model_params + input size)."""
    payload = {"model_params": cfg["model_params"], "image_size": image_size_of(cfg)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ construction
def _build_modules(cfg: dict, align_corners: bool, with_discriminator: bool) -> dict[str, nn.Module]:
    mp = cfg["model_params"]
    common = mp["common_params"]
    try:
        modules: dict[str, nn.Module] = {
            "kp_detector": KPDetector(**mp["kp_detector_params"], **common),
            "generator": OcclusionAwareGenerator(**mp["generator_params"], **common, align_corners=align_corners),
        }
        if with_discriminator and mp.get("discriminator_params") is not None:
            modules["discriminator"] = MultiScaleDiscriminator(**mp["discriminator_params"], **common)
    except TypeError as exc:
        raise FommError(f"config has an unknown or missing model parameter: {exc}") from None
    return modules


@functools.lru_cache(maxsize=32)
def _expected_shapes(cfg_json: str) -> dict[str, dict[str, tuple[int, ...]]]:
    cfg = json.loads(cfg_json)
    with torch.device("meta"):
        modules = _build_modules(cfg, True, True)
    return {name: {k: tuple(v.shape) for k, v in m.state_dict().items()} for name, m in modules.items()}


def expected_shapes(cfg: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    """Parameter/buffer names and shapes each module of ``cfg`` has (computed on the meta device)."""
    return _expected_shapes(json.dumps(cfg, sort_keys=True))


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise FommError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FommError("device 'cuda' was asked for but this PyTorch build has no usable CUDA GPU: use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FommError("device 'mps' was asked for but Apple Metal is not available here: use --device cpu")
    return dev


@dataclass
class ModelBundle:
    """The networks of one model, in eval mode on one device, with what identifies them."""

    kp_detector: KPDetector
    generator: OcclusionAwareGenerator
    discriminator: MultiScaleDiscriminator | None
    config: dict
    device: torch.device
    align_corners: bool = True
    checkpoint_hash: str = "random"
    config_name: str | None = None
    source: str = "random initialisation"
    extra: dict = field(default_factory=dict)

    @property
    def num_kp(self) -> int:
        return int(self.config["model_params"]["common_params"]["num_kp"])

    @property
    def estimate_jacobian(self) -> bool:
        return bool(self.config["model_params"]["common_params"].get("estimate_jacobian", False))

    @property
    def image_size(self) -> int:
        return image_size_of(self.config)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def parameter_counts(self) -> dict[str, int]:
        mods = {"kp_detector": self.kp_detector, "generator": self.generator, "discriminator": self.discriminator}
        return {k: sum(p.numel() for p in m.parameters()) for k, m in mods.items() if m is not None}

    def state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        out = {"kp_detector": self.kp_detector.state_dict(), "generator": self.generator.state_dict()}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator.state_dict()
        return out


def build_model(
    config: str | os.PathLike | dict,
    device: str | torch.device = "cpu",
    align_corners: bool = True,
    seed: int | None = None,
    with_discriminator: bool = False,
) -> ModelBundle:
    """Randomly initialised networks for ``config`` (training, benchmarks, tests)."""
    cfg = load_config(config)
    dev = resolve_device(device)
    if seed is not None:
        torch.manual_seed(seed)
    modules = _build_modules(cfg, align_corners, with_discriminator)
    for m in modules.values():
        m.to(dev).eval()
    return ModelBundle(
        modules["kp_detector"],
        modules["generator"],
        modules.get("discriminator"),
        cfg,
        dev,
        align_corners,
        config_name=None if isinstance(config, dict) else str(config),
    )


# ---------------------------------------------------------------------------------------------- checkpoint I/O
@dataclass
class Checkpoint:
    """What a checkpoint file holds: per-module state dicts and, for our format, the embedded config."""

    states: dict[str, dict[str, torch.Tensor]]
    config: dict | None
    path: Path
    kind: str  # "authors" or "safetensors"


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 1 < n < (1 << 27) and head[8:9] == b"{"


MAX_SAFETENSORS_HEADER = 1 << 27  # the header is JSON naming the tensors: kilobytes for any FOMM model
MAX_CHECKPOINT_BYTES = 8 << 30  # uncompressed: the largest released FOMM checkpoint is about 0.7 GB
MAX_INFLATION = 20  # torch.save stores tensors uncompressed; a member inflating more than this is a zip bomb


def _check_containers(path: Path) -> None:
    """Refuse, from their headers, a safetensors header or a zip member larger than any real checkpoint holds."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    if len(head) == 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if n >= MAX_SAFETENSORS_HEADER or n > size - 8:
            raise FommError(
                f"checkpoint {path} is a damaged safetensors file: its header declares {n} bytes "
                f"(the file has {size}): re-convert or re-download it"
            )
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch's own reader words the damage
    total = sum(i.file_size for i in infos)
    bomb = [i for i in infos if i.file_size > (1 << 20) and i.file_size > MAX_INFLATION * max(i.compress_size, 1)]
    if total > MAX_CHECKPOINT_BYTES or bomb:
        what = (
            f"a member ({bomb[0].filename}) inflating {bomb[0].compress_size} bytes to {bomb[0].file_size}"
            if bomb
            else f"{total} bytes of members"
        )
        raise FommError(f"refused to load {path}: it declares {what}, which no model checkpoint holds (a zip bomb?)")


def _check_weights(states: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    """Floating-point, finite weights (integer counters allowed): what a trained network holds."""
    for module, state in states.items():
        for key, t in state.items():
            if key.endswith("num_batches_tracked"):
                if t.is_floating_point() or t.is_complex() or t.numel() != 1:
                    raise FommError(
                        f"checkpoint {path}: {module}.{key} must be one whole number, got {t.dtype} "
                        f"{shape_str(tuple(t.shape))}"
                    )
                continue
            if not t.is_floating_point():
                raise FommError(
                    f"checkpoint {path}: {module}.{key} holds {str(t.dtype).replace('torch.', '')} "
                    "values, not floating-point weights: the file is damaged or not this kind of model"
                )
            if not bool(torch.isfinite(t).all()):
                raise FommError(
                    f"checkpoint {path}: {module}.{key} holds NaN or infinite weights (a damaged file, "
                    "or a training run that diverged): use another checkpoint"
                )


def _read_safetensors(path: Path) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as exc:
        raise FommError(
            f"checkpoint {path} is a damaged or truncated safetensors file ({exc}): re-convert or re-download it"
        ) from None
    states: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        module, _, name = key.partition(".")
        states.setdefault(module, {})[name] = value
    cfg = None
    if "config" in meta:
        try:
            if len(meta["config"]) > MAX_CONFIG_BYTES:
                raise ValueError("too long")
            cfg = json.loads(meta["config"])
        except (ValueError, RecursionError):
            raise FommError(f"checkpoint {path} has a damaged embedded configuration: re-convert it") from None
    return Checkpoint(states, cfg, path, "safetensors")


def _is_pickle(path: Path) -> bool:
    """True if the file (or, for a torch zip, its ``data.pkl``) starts with a whole pickle stream.

    The opcodes are only listed (``pickletools``), never executed. Tells a pickle the weights-only loader refuses
    (it would run code or build other objects) from a file that is no pickle at all.
    """
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                if not names:
                    return False
                with zf.open(names[0]) as f:
                    for _ in pickletools.genops(f):
                        pass
        else:
            with open(path, "rb") as f:
                for _ in pickletools.genops(f):
                    pass
    except Exception:  # noqa: BLE001 - any failure to list the opcodes means "not a pickle"
        return False
    return True


def _not_a_checkpoint(path: Path) -> FommError:
    return FommError(
        f"{path} is not a checkpoint (neither a PyTorch nor a safetensors file): give an authors' "
        ".pth.tar or a .safetensors file"
    )


def _read_torch(path: Path) -> Checkpoint:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The weights-only loader words every refusal alike ("Weights only load failed ..."), garbage included: a
        # file is refused as code only when it really is a pickle (a refused global, or a well-formed stream).
        if "unsupported global" in str(exc).lower() or _is_pickle(path):
            raise FommError(
                f"refused to load {path}: it is a pickle that would run code or build objects "
                "beyond plain tensors; only tensor checkpoints are loaded (convert it on a trusted "
                "machine with the authors' code, or ask its author for safetensors)"
            ) from None
        raise _not_a_checkpoint(path) from None
    except (EOFError, zipfile.BadZipFile) as exc:
        what = "ends too early" if isinstance(exc, EOFError) else "is a broken archive"
        raise FommError(f"checkpoint {path} is truncated or corrupt (the file {what}): download it again") from None
    except RuntimeError as exc:
        msg = str(exc).lower()
        if any(
            s in msg
            for s in (
                "zip archive",
                "failed finding central directory",
                "unexpected eof",
                "file read failed",
                "pytorchstreamreader",
            )
        ):
            raise FommError(f"checkpoint {path} is truncated or corrupt: download it again") from None
        raise FommError(f"{path} could not be read as a checkpoint: {str(exc).splitlines()[0]}") from None
    except (UnicodeDecodeError, ValueError, OSError, AttributeError, IndexError, KeyError):
        raise _not_a_checkpoint(path) from None
    if not isinstance(obj, dict):
        raise FommError(f"{path} is not a First Order Motion Model checkpoint (it holds a {type(obj).__name__})")
    keys = [k for k in obj if isinstance(k, str)]
    if "kp_detector" not in obj or "generator" not in obj:
        hint = ""
        if "inpainting_network" in obj or "bg_predictor" in obj:
            hint = " (it looks like a Thin-Plate Spline Motion Model checkpoint)"
        elif any(isinstance(v, torch.Tensor) for v in obj.values()):
            hint = " (it is a bare state dict of some network)"
        shown = ", ".join(sorted(keys)[:6]) + (", ..." if len(keys) > 6 else "")
        raise FommError(
            f"{path} is a checkpoint of another kind of model{hint}: it has no 'kp_detector' and "
            f"'generator' entries (top-level keys: {shown or 'none'})"
        )
    states = {}
    for name in MODULES:
        state = obj.get(name)
        if state is None:
            continue
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise FommError(f"{path}: entry '{name}' is not a state dict of tensors")
        states[name] = dict(state)
    return Checkpoint(states, None, path, "authors")


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint safely (no code execution) or raise a one-line :class:`FommError`."""
    path = Path(path)
    if not path.exists():
        raise FommError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise FommError(f"checkpoint path is a folder, not a file: {path}")
    if path.stat().st_size == 0:
        raise FommError(f"checkpoint {path} is empty (0 bytes): download it again")
    _check_containers(path)
    ckpt = _read_safetensors(path) if _is_safetensors(path) else _read_torch(path)
    _check_weights(ckpt.states, path)
    if ckpt.config is None:
        for side in (path.with_suffix(".yaml"), path.with_suffix(".json")):
            if side.exists() and side != path:
                ckpt.config = load_config(side)
                break
    return ckpt


def shape_str(shape: tuple[int, ...]) -> str:
    """A tensor shape as messages write it: ``(64, 3, 3, 3)``."""
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_states(
    states: dict[str, dict[str, torch.Tensor]],
    cfg: dict,
    *,
    what: str = "checkpoint",
    modules: tuple[str, ...] = MODULES,
) -> None:
    """Raise a FommError naming the first tensor whose name or shape differs from what ``cfg`` builds.

    The discriminator is compared only when it is among ``modules`` and the checkpoint has one.
    """
    expected = expected_shapes(cfg)
    for module in modules:
        if module not in states:
            if module == "discriminator":
                continue
            raise FommError(f"{what} has no '{module}' weights")
        exp = expected.get(module)
        if exp is None:  # config without a discriminator: nothing to compare
            continue
        got = states[module]
        for key, shape in exp.items():
            if key not in got:
                raise FommError(
                    f"config/checkpoint mismatch in {module}: '{key}' (shape {shape_str(shape)} in "
                    f"the config) is missing from the {what}"
                )
            have = tuple(got[key].shape)
            if have != shape:
                raise FommError(
                    f"config/checkpoint mismatch in {module}: '{key}' is {shape_str(have)} in the {what} "
                    f"but {shape_str(shape)} in the config"
                )
        extra = [k for k in got if k not in exp]
        if extra:
            raise FommError(
                f"config/checkpoint mismatch in {module}: the {what} has '{extra[0]}' "
                f"{shape_str(tuple(got[extra[0]].shape))}, which the config does not build"
            )


def detect_config(states: dict[str, dict[str, torch.Tensor]]) -> tuple[str, dict]:
    """The first shipped configuration whose networks match ``states`` exactly (names and shapes)."""
    names = [n for n in RELEASED if (CONFIG_DIR / f"{n}.yaml").exists()]
    names += [n for n in available_configs() if n not in names]
    # Exact match including the discriminator (tells e.g. vox-256 from vox-adv-256), then the inference networks.
    for modules in (MODULES, ("kp_detector", "generator")):
        for name in names:
            cfg = load_config(name)
            try:
                check_states(states, cfg, modules=modules)
            except FommError:
                continue
            return name, cfg
    kp = states.get("kp_detector", {})
    nkp = tuple(kp["kp.weight"].shape)[0] if "kp.weight" in kp else "?"
    raise FommError(
        f"no shipped configuration matches this checkpoint ({nkp} keypoints): pass its config with "
        "--config (the YAML it was trained with)"
    )


def _materialise(module: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # check_states ran first, so this is unexpected
        raise FommError(f"could not load {name}: {str(exc).splitlines()[0]}") from None


def load_model(
    checkpoint: str | os.PathLike | None = None,
    config: str | os.PathLike | dict | None = None,
    device: str | torch.device = "cpu",
    align_corners: bool = True,
    with_discriminator: bool = False,
) -> ModelBundle:
    """Load a model (default: the embedded one) for inference: eval mode, on ``device``, strict names and shapes.

    ``align_corners=True`` (default) reproduces the ``grid_sample`` behaviour the released checkpoints were trained
    with (PyTorch 1.0); ``False`` reproduces the authors' code as it runs on current PyTorch.
    """
    if checkpoint is None:
        if not DEFAULT_CHECKPOINT.exists():
            raise FommError(f"no default model is installed ({DEFAULT_CHECKPOINT} is missing): pass a checkpoint")
        checkpoint = DEFAULT_CHECKPOINT
    dev = resolve_device(device)
    ckpt = read_checkpoint(checkpoint)
    config_name = None
    if config is not None:
        cfg = load_config(config)
        config_name = None if isinstance(config, dict) else str(config)
    elif ckpt.config is not None:
        validate_config(ckpt.config, f"the configuration embedded in {ckpt.path}")
        cfg = ckpt.config
        config_name = cfg.get("name")
    else:
        config_name, cfg = detect_config(ckpt.states)
    use_disc = with_discriminator and "discriminator" in ckpt.states
    check_states(ckpt.states, cfg, modules=MODULES if use_disc else ("kp_detector", "generator"))
    with torch.device("meta"):
        modules = _build_modules(cfg, align_corners, use_disc)
    for name, module in modules.items():
        # half-precision files (the shipped default model is stored as float16) run in float32
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt.states[name].items()}
        _materialise(module, state, name)
        module.to(dev).eval()
    return ModelBundle(
        modules["kp_detector"],
        modules["generator"],
        modules.get("discriminator"),
        cfg,
        dev,
        align_corners,
        checkpoint_hash=sha256_file(ckpt.path)[:16],
        config_name=config_name,
        source=str(ckpt.path),
    )


def save_safetensors(
    states: dict[str, dict[str, torch.Tensor]],
    cfg: dict,
    path: str | os.PathLike,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``states`` + the configuration (embedded as JSON metadata) as one safetensors file, atomically."""
    from safetensors.torch import save_file

    validate_config(cfg)
    check_states(states, cfg, what="model")
    flat = {f"{module}.{k}": v.detach().cpu().contiguous() for module, st in states.items() for k, v in st.items()}
    meta = {"format": SAFETENSORS_FORMAT, "format_version": SAFETENSORS_VERSION, "config": json.dumps(cfg)}
    meta.update(extra_metadata or {})
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=meta)
    return path


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    config: str | os.PathLike | dict | None = None,
    keep_discriminator: bool = True,
) -> tuple[Path, str]:
    """Convert an authors' checkpoint to the project's safetensors format; returns (path, config name).

    ``dst`` equal to ``src`` is refused (rewriting a checkpoint in place changes its hash, which every
    clip extracted with it records), as is a ``dst`` that cannot be written; both before any reading.
    """
    check_output(dst, inputs=[src])
    ckpt = read_checkpoint(src)
    if config is not None:
        cfg, name = load_config(config), (None if isinstance(config, dict) else str(config))
    elif ckpt.config is not None:
        cfg, name = ckpt.config, ckpt.config.get("name")
    else:
        name, cfg = detect_config(ckpt.states)
    states = {k: v for k, v in ckpt.states.items() if keep_discriminator or k != "discriminator"}
    try:
        check_states(states, cfg)
    except FommError:
        if "discriminator" not in states:
            raise
        states.pop("discriminator")  # inference networks match; the training-only discriminator does not
        check_states(states, cfg)
    cfg = dict(cfg)
    if name:
        cfg.setdefault("name", Path(str(name)).stem)
    return save_safetensors(states, cfg, dst), str(name or "given config")
