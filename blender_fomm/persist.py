"""Whether a bake onto a target would persist and take effect; FommError saying why not otherwise.

A bake writes an action onto a datablock. Onto a datablock linked from a library (the mesh or its shape keys
of a linked or object-only overridden character) the action plays while the file is open but is dropped on
save and reload, when the library's own animation comes back. A shape key driven by a driver ignores its
baked curve (the driver wins), and with relative shape keys off the key values a bake writes do nothing.
Each of these is refused before any work, with what to do instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import bpy

from ml_core.errors import FommError


def _library_of(idb: bpy.types.ID | None) -> str | None:
    lib = getattr(idb, "library", None)
    if lib is None:
        return None
    return bpy.path.basename(lib.filepath) or lib.name


def check_bake_persists(obj: bpy.types.Object, *, what: str = "bake") -> None:
    """Refuse a target object whose animated data comes from a library (linked, not overridden)."""
    lib = _library_of(obj)
    if lib is not None:
        raise FommError(
            f"'{obj.name}' is linked from {lib}: a {what} onto it would be lost when the file is "
            "reloaded; make it a library override (Object > Library Override) or local, then bake"
        )


def check_key_persists(obj: bpy.types.Object, key: bpy.types.Key) -> None:
    """Refuse shape keys whose mesh or Key datablock is linked (a linked or object-only overridden mesh)."""
    check_bake_persists(obj)
    for idb, kind in ((obj.data, "mesh"), (key, "shape keys")):
        lib = _library_of(idb)
        if lib is not None:
            raise FommError(
                f"the {kind} of '{obj.name}' are linked from {lib} (only the object is overridden): a bake "
                "would be lost when the file is reloaded; override the mesh too (Library Override > Make > "
                "Selected & Content) or make it local, then bake"
            )


def check_keys_take_effect(obj: bpy.types.Object, key: bpy.types.Key, names: Sequence[str]) -> None:
    """Refuse absolute shape keys and keys driven by a driver: a bake would change nothing on screen."""
    if not key.use_relative:
        raise FommError(
            f"'{obj.name}' uses absolute shape keys (Relative is off in its Shape Keys panel): a bake "
            "writes each key's value, which only relative keys use; turn Relative on, then bake"
        )
    anim = key.animation_data
    if anim is None:
        return
    wanted = {f'key_blocks["{bpy.utils.escape_identifier(n)}"].value': n for n in names}
    for fc in anim.drivers:
        name = wanted.get(fc.data_path)
        if name is not None and not fc.mute:
            raise FommError(
                f"shape key {name!r} of '{obj.name}' is driven by a driver, which overrides a bake: "
                "remove or mute the driver, or leave the key out of the bake"
            )
