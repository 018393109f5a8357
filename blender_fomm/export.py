"""The take leaves Blender: one action for glTF and FBX, the Live Link Face CSV, the ARKit mapping table.

One take (:func:`join_take`): the shape-key bake (on the mesh's Key) and the head-bone bake (on the armature) are
joined into ONE action with two slots, an OBJECT slot for the armature and a KEY slot for the Key, each assigned
to its ID. Blender's glTF exporter (4.4+) exports such an action, with its default options, as one glTF animation
holding the morph weights and the bone channels; its FBX exporter, run with :data:`FBX_PRESET` over the baked
range, writes one take with both. The joined action is this add-on's (``fomm_bake = "take"``) and lists the bakes
it holds (``fomm_kinds``), so a later bake of either kind replaces it like its own (see :mod:`.anim`).

The numbers live in ``ml_core`` (:mod:`ml_core.arkit`, :mod:`ml_core.livelink`, :mod:`ml_core.headpose`); this
module reads the baked curves and writes files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import bpy
import numpy as np

from ml_core.arkit import arkit_name, guess_mapping
from ml_core.errors import FommError
from ml_core.headpose import pose_from_json
from ml_core.livelink import take_rows, write_take

from . import shapekeys
from .anim import KINDS_PROP, OWNER_PROP, TARGET_PROP, is_own_action, nla_track_name
from .bones import HEAD_KIND, HEAD_POSE_PROP

TAKE_KIND = "take"
NONE_ITEM = "NONE"

#: Options for ``bpy.ops.export_scene.fbx`` that carry the take's shape-key and bone animation in one take
#: (Unity and Unreal read it as one clip): bake the scene range (set to the baked range while exporting), no
#: per-action or per-strip takes, no leaf bones, no key reduction (the bake is already reduced).
FBX_PRESET: dict = {
    "use_selection": False,
    "object_types": {"ARMATURE", "MESH"},
    "add_leaf_bones": False,
    "bake_anim": True,
    "bake_anim_use_all_bones": True,
    "bake_anim_use_nla_strips": False,
    "bake_anim_use_all_actions": False,
    "bake_anim_force_startend_keying": True,
    "bake_anim_simplify_factor": 0.0,
    "use_armature_deform_only": False,
}


# --------------------------------------------------------------------------------------------------
# Reading bakes
# --------------------------------------------------------------------------------------------------


def _bag(action: bpy.types.Action, slot) -> bpy.types.ActionChannelbag | None:
    if slot is None:
        return None
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                return bag
    return None


def baked_channels(id_data: bpy.types.ID | None, kind: str):
    """(action, slot, channelbag) of this add-on's ``kind`` bake on ``id_data`` (its active action, else its
    own NLA track's strip), or None."""
    adt = None if id_data is None else id_data.animation_data
    if adt is None:
        return None
    if is_own_action(adt.action, kind):
        bag = _bag(adt.action, adt.action_slot)
        if bag is not None:
            return adt.action, adt.action_slot, bag
    for track in adt.nla_tracks:
        if track.name != nla_track_name(kind):
            continue
        for strip in track.strips:
            if is_own_action(strip.action, kind):
                bag = _bag(strip.action, strip.action_slot)
                if bag is not None:
                    return strip.action, strip.action_slot, bag
    return None


def baked_key_values(obj: bpy.types.Object | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(frames [M], shape-key name -> baked values [M]) over the baked range of ``obj``'s shape-key bake."""
    key = obj.data.shape_keys if obj is not None and obj.type == "MESH" else None
    found = baked_channels(key, shapekeys.KIND)
    if found is None:
        name = obj.name if obj is not None else "the target"
        raise FommError(f"nothing baked to export on '{name}': bake the shape keys first")
    _, _, bag = found
    curves = {}
    for kb in key.key_blocks:
        fc = bag.fcurves.find(shapekeys.shape_key_path(kb.name), index=0)
        if fc is not None and len(fc.keyframe_points):
            curves[kb.name] = fc
    if not curves:
        raise FommError(f"nothing baked to export on '{obj.name}': bake the shape keys first")
    lo = min(fc.range()[0] for fc in curves.values())
    hi = max(fc.range()[1] for fc in curves.values())
    frames = np.arange(int(np.floor(lo + 1e-6)), int(np.floor(hi + 1e-6)) + 1)
    values = {n: np.array([fc.evaluate(float(f)) for f in frames]) for n, fc in curves.items()}
    return frames, values


def baked_head_angles(arm: bpy.types.Object | None, frames: np.ndarray) -> np.ndarray | None:
    """The head bake's (yaw, pitch, roll) radians at ``frames`` [M,3] (held at the ends), or None if the
    armature carries no head bake."""
    found = baked_channels(arm, HEAD_KIND)
    if found is None or HEAD_POSE_PROP not in found[0]:
        return None
    at, angles = pose_from_json(str(found[0][HEAD_POSE_PROP]))
    return np.stack([np.interp(frames, at, angles[:, i]) for i in range(3)], axis=1)


# --------------------------------------------------------------------------------------------------
# The ARKit mapping table
# --------------------------------------------------------------------------------------------------


def fill_arkit_map(settings, obj: bpy.types.Object | None, *, keep_edits: bool = True) -> int:
    """Fill ``settings.arkit_map`` with the target's shape keys, each mapped to the ARKit name it spells (or
    none). With ``keep_edits`` a key already listed keeps its mapping. Returns how many keys map."""
    names = shapekeys.bakeable_keys(obj)
    old = {item.name: item.arkit for item in settings.arkit_map} if keep_edits else {}
    guessed = guess_mapping(names)
    settings.arkit_map.clear()
    for n in names:
        item = settings.arkit_map.add()
        item.name = n
        item.arkit = old.get(n) or guessed.get(n, NONE_ITEM)
    return sum(1 for item in settings.arkit_map if item.arkit != NONE_ITEM)


def arkit_mapping(settings, names: Sequence[str]) -> dict[str, str]:
    """Shape-key name -> ARKit name: the table's (when filled), else read from the names themselves."""
    if len(settings.arkit_map):
        return {i.name: i.arkit for i in settings.arkit_map if i.arkit != NONE_ITEM and i.name in names}
    return guess_mapping(names)


# --------------------------------------------------------------------------------------------------
# Live Link Face CSV
# --------------------------------------------------------------------------------------------------


def export_livelink_csv(scene: bpy.types.Scene, filepath: str) -> str:
    """Write the baked take as a Live Link Face CSV at ``filepath``; returns the report line."""
    s = scene.fomm
    path = os.path.normpath(bpy.path.abspath(filepath)) if filepath else ""
    if not path:
        raise FommError("no CSV path: pick where to save the Live Link Face CSV")
    frames, values = baked_key_values(s.target_object)
    mapping = arkit_mapping(s, list(values))
    if not mapping:
        raise FommError(
            "no baked shape key is mapped to an ARKit name: fill the ARKit table in the Export panel "
            "(or name the keys the ARKit way, e.g. jawOpen)"
        )
    shapes: dict[str, np.ndarray] = {}
    for key_name, arkit in mapping.items():
        canonical = arkit_name(arkit)
        if canonical is None:
            raise FommError(f"'{key_name}' is mapped to {arkit!r}, which is not an ARKit name")
        if canonical in shapes:
            raise FommError(f"two shape keys are mapped to {canonical}: map each ARKit name once")
        shapes[canonical] = values[key_name]
    head = baked_head_angles(s.armature_object, frames)
    rows = take_rows(frames, shapekeys.scene_fps(scene), shapes, head)
    write_take(path, rows)
    extra = ", head angles" if head is not None else ""
    return f"exported {len(frames)} frames, {len(shapes)} ARKit shapes{extra} to {path}"


# --------------------------------------------------------------------------------------------------
# One take
# --------------------------------------------------------------------------------------------------


def _copy_curves(src: bpy.types.ActionChannelbag, dst: bpy.types.ActionChannelbag) -> None:
    for fc in src.fcurves:
        new = dst.fcurves.new(fc.data_path, index=fc.array_index)
        if fc.group is not None:
            new.group = dst.groups.get(fc.group.name) or dst.groups.new(fc.group.name)
        n = len(fc.keyframe_points)
        pts = new.keyframe_points
        pts.add(n)
        for prop, width, dtype in (
            ("co", 2, np.float32),
            ("handle_left", 2, np.float32),
            ("handle_right", 2, np.float32),
            ("interpolation", 1, np.int32),
        ):
            buf = np.empty(n * width, dtype=dtype)
            fc.keyframe_points.foreach_get(prop, buf)
            pts.foreach_set(prop, buf)
        new.update()


def _active_bake(id_data: bpy.types.ID | None):
    """(action, slot, bag, kinds) of this add-on's active action on ``id_data`` (any kind), or None."""
    adt = None if id_data is None else id_data.animation_data
    if adt is None or not is_own_action(adt.action) or adt.action_slot is None:
        return None
    bag = _bag(adt.action, adt.action_slot)
    if bag is None:
        return None
    action = adt.action
    kinds = list(action.get(KINDS_PROP, ())) or [str(action.get(OWNER_PROP))]
    return action, adt.action_slot, bag, kinds


def join_take(scene: bpy.types.Scene) -> bpy.types.Action | None:
    """Join the target's shape-key bake and the armature's head-bone bake into one two-slot action, assigned to
    both (see the module docstring). Only active-action bakes join (NLA strips stay as they are). Returns the
    take, or None when there are not two bakes to join."""
    s = scene.fomm
    mesh, arm = s.target_object, s.armature_object
    key = mesh.data.shape_keys if mesh is not None and mesh.type == "MESH" else None
    if key is None or arm is None or arm.type != "ARMATURE":
        return None
    parts = [(arm, _active_bake(arm)), (key, _active_bake(key))]
    if any(p is None for _, p in parts):
        return None
    (_, (arm_action, _, _, arm_kinds)), (_, (key_action, _, _, key_kinds)) = parts
    if arm_action == key_action or HEAD_KIND not in arm_kinds or shapekeys.KIND not in key_kinds:
        return None
    take = bpy.data.actions.new(f"FOMM Take {mesh.name}")
    take[OWNER_PROP] = TAKE_KIND
    take[KINDS_PROP] = [HEAD_KIND, shapekeys.KIND]
    take[TARGET_PROP] = f"{arm.name}, {key.name}"
    if HEAD_POSE_PROP in arm_action:
        take[HEAD_POSE_PROP] = arm_action[HEAD_POSE_PROP]
    layer = take.layers.new("Layer")
    strip = layer.strips.new(type="KEYFRAME")
    old = []
    for id_data, (action, _slot, bag, _) in parts:
        new_slot = take.slots.new(id_type=id_data.id_type, name=id_data.name)
        _copy_curves(bag, strip.channelbag(new_slot, ensure=True))
        id_data.animation_data.action = take
        id_data.animation_data.action_slot = new_slot
        old.append(action)
    for action in old:
        if action.users == 0:
            bpy.data.actions.remove(action)
    return take


def export_fbx(scene: bpy.types.Scene, filepath: str) -> str:
    """Export the baked take as FBX with :data:`FBX_PRESET` over the baked range (one take), atomically."""
    from ml_core.fileio import atomic_path

    s = scene.fomm
    path = os.path.normpath(bpy.path.abspath(filepath)) if filepath else ""
    if not path:
        raise FommError("no FBX path: pick where to save the FBX file")
    if os.path.isdir(path):
        raise FommError(f"cannot write the FBX {path}: it is a folder; pick a file name")
    frames, _ = baked_key_values(s.target_object)
    saved = (scene.frame_start, scene.frame_end)
    try:
        scene.frame_start, scene.frame_end = int(frames[0]), int(frames[-1])
        with atomic_path(path, suffix=".fbx") as tmp:
            with bpy.context.temp_override(scene=scene):
                result = bpy.ops.export_scene.fbx(filepath=str(tmp), **FBX_PRESET)
            if "FINISHED" not in result:
                raise FommError(f"Blender's FBX exporter did not finish writing {path}")
    except OSError as exc:
        raise FommError(f"cannot write the FBX {path} ({exc.strerror or exc}): pick a writable folder") from None
    except RuntimeError as exc:
        raise FommError(f"Blender's FBX exporter failed on {path}: {str(exc).strip().splitlines()[-1]}") from None
    finally:
        scene.frame_start, scene.frame_end = saved
    return f"exported frames {frames[0]}-{frames[-1]} as one FBX take to {path}"
