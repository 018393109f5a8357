"""Add-on preferences (model, device, worker Python, cache folder) and how the rest of the add-on reads them.

:func:`worker_settings` resolves each setting: the preference if set, else an environment variable
(``FOMM_CHECKPOINT``, ``FOMM_CONFIG``, ``FOMM_DEVICE``, ``FOMM_WORKER_PYTHON``, ``FOMM_CACHE_DIR``; for
pipelines and tests, where the add-on may be registered without preferences), else the default.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

ADDON_ID = __package__ or "blender_fomm"


class FOMM_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    checkpoint: StringProperty(
        name="Checkpoint",
        subtype="FILE_PATH",
        description="Model weights (.pth.tar or .safetensors); empty = the embedded default model",
    )
    config: StringProperty(
        name="Config",
        subtype="FILE_PATH",
        description="Model configuration (.yaml) for the checkpoint; empty = found beside it or built in",
    )
    device: EnumProperty(
        name="Device",
        items=[
            ("auto", "Auto", "CUDA or Apple MPS when available, else CPU"),
            ("cpu", "CPU", ""),
            ("cuda", "CUDA", "NVIDIA GPU"),
            ("mps", "MPS", "Apple GPU"),
        ],
        default="auto",
    )
    worker_python: StringProperty(
        name="Worker Python",
        subtype="FILE_PATH",
        description="Python with ml_core installed; empty = Blender's own Python with the bundled packages",
    )
    cache_dir: StringProperty(
        name="Cache Folder",
        subtype="DIR_PATH",
        description="Where clips, calibrations and previews go; empty = the extension's user folder",
    )

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "checkpoint")
        col.prop(self, "config")
        col.prop(self, "device")
        col.prop(self, "worker_python")
        col.prop(self, "cache_dir")
        col.operator("fomm.check_worker", icon="CONSOLE")


@dataclass(frozen=True)
class WorkerSettings:
    checkpoint: str
    config: str
    device: str
    python: str
    cache_dir: Path

    def model_keys(self) -> dict:
        """The model part of a worker job."""
        return {"checkpoint": self.checkpoint or None, "config": self.config or None, "device": self.device}

    def model_identity(self) -> str:
        """Names the model files and their versions (path, size, mtime), for cache keys; an empty
        checkpoint means ml_core's shipped default model, identified by its own files."""
        files = [self.checkpoint, self.config]
        if not self.checkpoint:
            files += [str(p) for p in default_model_files()]
        parts = []
        for p in files:
            if p and os.path.isfile(p):
                st = os.stat(p)
                parts.append(f"{os.path.abspath(p)}:{st.st_size}:{int(st.st_mtime)}")
            else:
                parts.append(p or "default")
        return "|".join(parts)


def default_model_files() -> list[Path]:
    """The files of ml_core's embedded default model (found without importing ml_core's torch side)."""
    spec = importlib.util.find_spec("ml_core")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / "assets" / "default"
    return sorted(p for p in folder.glob("*") if p.suffix in {".safetensors", ".yaml", ".pth", ".tar"})


def preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def _abs(path: str) -> str:
    return bpy.path.abspath(path) if path else ""


def default_cache_dir() -> Path:
    try:
        return Path(bpy.utils.extension_path_user(ADDON_ID, create=True))
    except (ValueError, AttributeError, RuntimeError):  # not installed as an extension
        return Path(tempfile.gettempdir()) / "fomm-cache"


def worker_settings(context=None) -> WorkerSettings:
    prefs = preferences(context)

    def pick(attr: str, env: str, default: str = "") -> str:
        value = getattr(prefs, attr, "") if prefs is not None else ""
        return _abs(value) if value and attr != "device" else value or os.environ.get(env, "") or default

    device = (getattr(prefs, "device", "") if prefs is not None else "") or "auto"
    if device == "auto":
        device = os.environ.get("FOMM_DEVICE", "auto")
    cache = pick("cache_dir", "FOMM_CACHE_DIR")
    return WorkerSettings(
        checkpoint=pick("checkpoint", "FOMM_CHECKPOINT"),
        config=pick("config", "FOMM_CONFIG"),
        device=device,
        python=pick("worker_python", "FOMM_WORKER_PYTHON"),
        cache_dir=Path(cache) if cache else default_cache_dir(),
    )


classes = (FOMM_AP_preferences,)


register, unregister = bpy.utils.register_classes_factory(classes)  # in order; reversed
