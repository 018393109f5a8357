"""Animation data: F-curves written in bulk into a new slotted action owned by this add-on.

Blender 4.4+ actions are layered: action -> slot (one per animated ID) -> layer -> keyframe strip ->
channelbag (per slot) -> F-curves. Blender 5.0 removed ``Action.fcurves``; the path below works on 4.4,
4.5 and 5.x. Keys go in with ``keyframe_points.add(n)`` + ``foreach_set`` (no per-key Python calls).

Ownership: every action made here carries the custom property ``fomm_bake`` (what it bakes). A re-bake
replaces only such actions (as the active action or in this add-on's NLA track) and refuses to displace
an action of the user's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import bpy
import numpy as np

from ml_core.errors import FommError
from ml_core.retarget import rdp_keep

OWNER_PROP = "fomm_bake"
TARGET_PROP = "fomm_target"
KINDS_PROP = "fomm_kinds"  # a take joined from several bakes (blender_fomm.export): the kinds it holds
NLA_TRACK_PREFIX = "FOMM "

_LINEAR = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value


@dataclass
class Curve:
    """One F-curve to write: ``values`` at ``frames`` (same length), optionally in a group."""

    data_path: str
    index: int
    frames: np.ndarray
    values: np.ndarray
    group: str = ""


@dataclass(frozen=True)
class WriteReport:
    action: str
    curves: int
    keys_before: int
    keys_after: int
    frame_start: float
    frame_end: float


def is_own_action(action: bpy.types.Action | None, kind: str | None = None) -> bool:
    """True if ``action`` was made by this add-on (and bakes ``kind``, when given)."""
    if action is None:
        return False
    mark = action.get(OWNER_PROP)
    if mark is not None and kind is not None and mark != kind:  # a joined take holds several kinds
        return kind in list(action.get(KINDS_PROP, ()))
    return mark is not None


def ensure_channelbag(action: bpy.types.Action, slot: bpy.types.ActionSlot) -> bpy.types.ActionChannelbag:
    """The channelbag of ``slot`` in the action's first layer's first keyframe strip (made if missing)."""
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True)


def action_fcurves(action: bpy.types.Action) -> list[bpy.types.FCurve]:
    """Every F-curve of a (layered) action, all slots."""
    out: list[bpy.types.FCurve] = []
    for layer in action.layers:
        for strip in layer.strips:
            for bag in getattr(strip, "channelbags", ()):
                out.extend(bag.fcurves)
    return out


def nla_track_name(kind: str) -> str:
    return NLA_TRACK_PREFIX + kind


def check_placement(id_data: bpy.types.ID, placement: str) -> None:
    """Raise FommError (before anything is changed) if placing a bake would displace user data."""
    if placement not in {"ACTIVE", "NLA"}:
        raise FommError(f"unknown placement {placement!r}: use ACTIVE or NLA")
    adt = id_data.animation_data
    if placement == "ACTIVE" and adt is not None and adt.action is not None and not is_own_action(adt.action):
        raise FommError(
            f"'{id_data.name}' already plays your action '{adt.action.name}': bake as an NLA strip instead, "
            "or unassign that action first"
        )


def _validated(curves: Sequence[Curve]) -> list[tuple[Curve, np.ndarray, np.ndarray]]:
    out = []
    for c in curves:
        f = np.asarray(c.frames, dtype=np.float64).ravel()
        v = np.asarray(c.values, dtype=np.float64).ravel()
        if len(f) != len(v) or len(f) == 0:
            raise FommError(f"curve {c.data_path}[{c.index}]: {len(f)} frames but {len(v)} values")
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(v))):
            raise FommError(f"curve {c.data_path}[{c.index}] has non-finite values; nothing was baked")
        if np.any(np.diff(f) <= 0):
            raise FommError(f"curve {c.data_path}[{c.index}]: frames must increase")
        out.append((c, f, v))
    if not out:
        raise FommError("nothing to bake: no curves")
    return out


def _reduce(checked: list, tolerance: float) -> list:
    if tolerance <= 0:
        return checked
    first = checked[0][1]
    if all(len(f) == len(first) and np.array_equal(f, first) for _, f, _ in checked):
        mask = rdp_keep(first, np.stack([v for _, _, v in checked], axis=1), tolerance)
        return [(c, f[mask[:, i]], v[mask[:, i]]) for i, (c, f, v) in enumerate(checked)]
    out = []
    for c, f, v in checked:
        m = rdp_keep(f, v, tolerance)
        out.append((c, f[m], v[m]))
    return out


def write_fcurve(
    bag: bpy.types.ActionChannelbag, curve: Curve, frames: np.ndarray, values: np.ndarray
) -> bpy.types.FCurve:
    """Create one F-curve in ``bag`` and fill it in bulk (linear interpolation)."""
    fc = bag.fcurves.new(curve.data_path, index=curve.index)
    if curve.group:
        fc.group = bag.groups.get(curve.group) or bag.groups.new(curve.group)
    n = len(frames)
    co = np.empty(2 * n, dtype=np.float32)
    co[0::2] = frames
    co[1::2] = values
    points = fc.keyframe_points
    points.add(n)
    points.foreach_set("co", co)
    points.foreach_set("interpolation", np.full(n, _LINEAR, dtype=np.int32))
    fc.update()
    return fc


def write_action(
    id_data: bpy.types.ID,
    curves: Sequence[Curve],
    *,
    kind: str,
    placement: str = "ACTIVE",
    tolerance: float = 0.0,
    name: str | None = None,
) -> WriteReport:
    """Bake ``curves`` onto ``id_data`` (a Key datablock, an armature object...) as a new action.

    ``tolerance`` > 0 reduces each curve with Ramer-Douglas-Peucker: linear interpolation through the
    kept keys stays within ``tolerance`` of every original sample (keys are linear for that reason).
    ``placement`` "ACTIVE" makes it the active action; "NLA" puts it as a strip on this add-on's own
    track ``FOMM <kind>``. Earlier bakes of the same kind on ``id_data`` (ours only) are replaced and
    removed; user actions and keys are never touched. Validates everything before changing anything.
    """
    checked = _validated(curves)
    check_placement(id_data, placement)
    reduced = _reduce(checked, tolerance)
    before = sum(len(f) for _, f, _ in checked)
    after = sum(len(f) for _, f, _ in reduced)

    action = bpy.data.actions.new(name or f"FOMM {kind} {id_data.name}")
    action[OWNER_PROP] = kind
    action[TARGET_PROP] = id_data.name
    slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
    bag = ensure_channelbag(action, slot)
    for c, f, v in reduced:
        write_fcurve(bag, c, f, v)

    adt = id_data.animation_data or id_data.animation_data_create()
    old = remove_own_animation(id_data, kind, delete_actions=False)
    if placement == "ACTIVE":
        adt.action = action
        adt.action_slot = slot
    else:
        track = adt.nla_tracks.new()
        track.name = nla_track_name(kind)
        start = int(np.floor(min(f[0] for _, f, _ in reduced)))
        strip = track.strips.new(action.name, start, action)
        strip.action_slot = slot
    for a in old:
        if a.users == 0:
            bpy.data.actions.remove(a)
    lo = min(float(f[0]) for _, f, _ in reduced)
    hi = max(float(f[-1]) for _, f, _ in reduced)
    return WriteReport(action.name, len(reduced), before, after, lo, hi)


def remove_own_animation(id_data: bpy.types.ID, kind: str, *, delete_actions: bool = True) -> list:
    """Unassign this add-on's ``kind`` bakes from ``id_data`` (active action and own NLA tracks).

    Returns the actions unassigned (deleted too if ``delete_actions`` and nothing else uses them).
    """
    adt = id_data.animation_data
    if adt is None:
        return []
    found = []
    if is_own_action(adt.action, kind):
        found.append(adt.action)
        adt.action = None
    for track in list(adt.nla_tracks):
        if track.name != nla_track_name(kind):
            continue
        strips = list(track.strips)
        if strips and all(is_own_action(s.action, kind) for s in strips):
            found.extend(s.action for s in strips)
            adt.nla_tracks.remove(track)
    if delete_actions:
        for a in found:
            if a.users == 0:
                bpy.data.actions.remove(a)
    return found


def own_action(id_data: bpy.types.ID, kind: str) -> bpy.types.Action | None:
    """This add-on's current ``kind`` bake on ``id_data`` (active or in its NLA track), if any."""
    adt = id_data.animation_data
    if adt is None:
        return None
    if is_own_action(adt.action, kind):
        return adt.action
    for track in adt.nla_tracks:
        if track.name == nla_track_name(kind):
            for s in track.strips:
                if is_own_action(s.action, kind):
                    return s.action
    return None
