"""Bake from Examples: the animator keys a few frames of the performance, the add-on learns the rest.

The examples are the keyframes on the target's own channels inside the clip's frames: the shape keys of
``scene.fomm.target_object`` (its Key's action), the bones and custom properties of ``scene.fomm.armature_object``
(its action) and the custom properties and transforms of the target object (its action); another action can be
picked (``scene.fomm.examples_action``). :func:`bake_step` reads them, learns per channel a mapping from the clip's
motion (:mod:`ml_core.examples`), and writes every such channel on every frame into a new action of this add-on
(kind ``examples``), placed as chosen and reduced within the tolerance. Shape keys that Bake Shape Keys calibrated
start from that calibration (*Start from Calibration*, :func:`calibration_prior`): the examples correct it, when
leave-one-out says that predicts them better.

The examples stay the animator's: their action is never changed. Baking unassigns it (it keeps a fake user) and
remembers it on the ID (custom property ``fomm_examples``); the next bake reads it again. **Edit Examples**
(:func:`edit_examples`) puts it back as the active action, so posing and keying a frame adds an example.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

import bpy
import numpy as np

from ml_core.clip import MotionClip
from ml_core.errors import FommError
from ml_core.examples import example_features, solve_examples
from ml_core.retarget import solve_weights

from . import anim, calibration, shapekeys

KIND = "examples"
EXAMPLES_PROP = "fomm_examples"  # on an ID: the name of its examples action
SLOT_PROP = "fomm_examples_slot"  # on an ID: the identifier of its slot in that action
CLIP_PROP = "fomm_examples_clip"  # on an examples action: the clip (model) it was last learned from
DIGEST_PROP = "fomm_examples_digest"  # on a bake: its keys as written, to notice keys added to it afterwards
_PATH = re.compile(r'^(?P<owner>.*?)(?:\.(?P<attr>[A-Za-z_]\w*)|\["(?P<custom>(?:[^"\\]|\\.)*)"\])$')
_LOCKS = {"location": "lock_location", "rotation_euler": "lock_rotation", "scale": "lock_scale"}


@dataclass
class Channel:
    """One keyed channel: where it is, its bounds, and its keys inside the clip (scene frames, values)."""

    id_data: bpy.types.ID
    data_path: str
    index: int
    label: str
    frames: np.ndarray
    values: np.ndarray
    lower: float = -np.inf
    upper: float = np.inf
    array: bool = False  # a component of a vector property (bone/object transform): may stay constant


@dataclass
class Source:
    """An ID, the action its examples come from and that action's slot for it."""

    id_data: bpy.types.ID
    action: bpy.types.Action
    slot: bpy.types.ActionSlot | None
    channels: list[Channel] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Finding the examples
# --------------------------------------------------------------------------------------------------


def target_ids(scene) -> list[bpy.types.ID]:
    """The IDs whose keys can be examples: the target mesh's Key and object, the armature object."""
    s = scene.fomm
    out: list[bpy.types.ID] = []
    obj = s.target_object
    if obj is not None:
        if obj.type == "MESH" and obj.data.shape_keys is not None:
            out.append(obj.data.shape_keys)
        out.append(obj)
    if s.armature_object is not None and s.armature_object not in out:
        out.append(s.armature_object)
    return out


def _slot_for(action: bpy.types.Action, id_data: bpy.types.ID, identifier: str = "") -> bpy.types.ActionSlot | None:
    slots = [sl for sl in action.slots if sl.target_id_type in {id_data.id_type, "UNSPECIFIED"}]
    for sl in slots:
        if identifier and sl.identifier == identifier:
            return sl
    named = [sl for sl in slots if sl.name_display == id_data.name]
    return (named or slots or [None])[0]


def examples_action(id_data: bpy.types.ID, picked: bpy.types.Action | None = None) -> Source | None:
    """Where ``id_data``'s examples are: the picked action, else its active action when it is the user's, else the
    action remembered at the last bake."""
    adt = id_data.animation_data
    if picked is not None:
        slot = _slot_for(picked, id_data)
        return Source(id_data, picked, slot) if slot is not None else None
    if adt is not None and adt.action is not None and not anim.is_own_action(adt.action):
        return Source(id_data, adt.action, adt.action_slot or _slot_for(adt.action, id_data))
    name = id_data.get(EXAMPLES_PROP)
    action = bpy.data.actions.get(name) if name else None
    if action is None or anim.is_own_action(action):
        return None
    return Source(id_data, action, _slot_for(action, id_data, str(id_data.get(SLOT_PROP, ""))))


def _fcurves(source: Source) -> list[bpy.types.FCurve]:
    if source.slot is None:
        return []
    out = []
    for layer in source.action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(source.slot)
            if bag is not None:
                out.extend(bag.fcurves)
    return out


def _label(id_data: bpy.types.ID, path: str, index: int, array: bool) -> str:
    m = re.fullmatch(r'key_blocks\["(.*)"\]\.value', path)
    if m:
        return m.group(1)
    m = re.fullmatch(r'pose\.bones\["(.*?)"\](.*)', path)
    tail = path if not m else f"{m.group(1)}{m.group(2)}"
    return f"{tail}[{index}]" if array else tail


def _describe(id_data: bpy.types.ID, fc: bpy.types.FCurve) -> tuple[float, float, bool]:
    """(lower, upper, is_array) of an F-curve's property; FommError if it cannot be an example channel."""
    path = fc.data_path
    m = _PATH.match(path)
    where = f"'{id_data.name}' {path}"
    try:
        owner = id_data if not m or not m.group("owner") else id_data.path_resolve(m.group("owner"))
    except ValueError:
        owner = None
    if m is None or owner is None:
        raise FommError(f"the keyed channel {where} does not exist: delete its keys, or fix its path")
    if m.group("custom") is not None:
        name = m.group("custom").replace('\\"', '"')
        if name not in owner or not isinstance(owner[name], int | float) or isinstance(owner[name], bool):
            raise FommError(f"the keyed channel {where} is not a number: only numeric channels can be learned")
        ui = owner.id_properties_ui(name).as_dict()
        return float(ui.get("min", -np.inf)), float(ui.get("max", np.inf)), False
    attr = m.group("attr")
    prop = owner.bl_rna.properties.get(attr)
    if prop is None or prop.type not in {"FLOAT", "INT"}:
        raise FommError(f"the keyed channel {where} is not a number: only numeric channels can be learned")
    if isinstance(owner, bpy.types.ShapeKey):
        return float(owner.slider_min), float(owner.slider_max), False
    _check_lock(owner, attr, fc.array_index, where)
    array = getattr(prop, "is_array", False) and prop.array_length > 0
    return float(prop.hard_min), float(prop.hard_max), bool(array)


def _check_lock(owner, attr: str, index: int, where: str) -> None:
    lock = None
    if attr in _LOCKS and hasattr(owner, _LOCKS[attr]):
        lock = getattr(owner, _LOCKS[attr])[index]
    elif attr == "rotation_quaternion" and hasattr(owner, "lock_rotation"):
        lock = (owner.lock_rotations_4d and owner.lock_rotation_w) if index == 0 else owner.lock_rotation[index - 1]
    if lock:
        raise FommError(f"the keyed channel {where}[{index}] is locked: unlock it, or delete its keys")


def _keys_of(fc: bpy.types.FCurve, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The keys of ``fc`` on whole scene frames; FommError if two disagree on one frame."""
    n = len(fc.keyframe_points)
    co = np.empty(2 * n, dtype=np.float32)
    fc.keyframe_points.foreach_get("co", co)
    frames = np.round(co[0::2].astype(np.float64)).astype(np.int64)
    values = co[1::2].astype(np.float64)
    order = np.argsort(frames, kind="stable")
    frames, values = frames[order], values[order]
    same = np.flatnonzero(np.diff(frames) == 0)
    for i in same:
        if abs(values[i] - values[i + 1]) > 1e-6:
            raise FommError(
                f"{where} has two keys on frame {frames[i]} ({values[i]:.4g} and {values[i + 1]:.4g}): keep one of them"
            )
    keep = np.concatenate([[True], np.diff(frames) != 0]) if len(frames) else np.zeros(0, bool)
    return frames[keep], values[keep]


def read_examples(scene, first: int, last: int) -> list[Source]:
    """Every source with its keyed channels, keys restricted to scene frames ``first..last``. Validates the
    channels (exists, numeric, not locked, not driven, no conflicting keys) before anything is changed."""
    picked = scene.fomm.examples_action
    sources = []
    outside = 0
    for id_data in target_ids(scene):
        src = examples_action(id_data, picked)
        if src is None:
            continue
        drivers = id_data.animation_data.drivers if id_data.animation_data is not None else ()
        for fc in _fcurves(src):
            if len(fc.keyframe_points) == 0 or fc.mute:
                continue
            where = f"'{id_data.name}' {fc.data_path}"
            if fc.lock:
                raise FommError(f"the keyed channel {where}[{fc.array_index}] is locked: unlock it, or delete its keys")
            if any(d.data_path == fc.data_path and d.array_index == fc.array_index for d in drivers):
                raise FommError(f"the keyed channel {where} is driven by a driver: remove the driver, or its keys")
            lower, upper, array = _describe(id_data, fc)
            frames, values = _keys_of(fc, where)
            inside = (frames >= first) & (frames <= last)
            outside += int((~inside).sum())
            if not inside.any():
                continue
            label = _label(id_data, fc.data_path, fc.array_index, array)
            src.channels.append(
                Channel(
                    id_data, fc.data_path, fc.array_index, label, frames[inside], values[inside], lower, upper, array
                )
            )
        if src.channels:
            sources.append(src)
    if not sources:
        if outside:
            raise FommError(
                f"all {outside} keys lie outside the clip's frames {first}-{last}: key poses inside them, "
                "or move the Start Frame"
            )
        raise FommError("no examples: scrub to telling frames of the performance, pose the target and insert keyframes")
    return sources


# --------------------------------------------------------------------------------------------------
# The solve
# --------------------------------------------------------------------------------------------------


@dataclass
class Solved:
    """The solve's outcome per channel: the values per frame, the leave-one-out report, kept or skipped."""

    channel: Channel
    values: np.ndarray
    loo_max: float
    loo_rms: float
    spread: float
    explained: bool
    model: str
    prior: bool = False  # learned as a correction of the calibration


def frame_features(clip: MotionClip, scene, start: int, settings) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The clip's feature blocks resampled to one row per scene frame from ``start`` (frames, blocks)."""
    jac = clip.jacobians if clip.has_jacobians else None
    blocks = example_features(
        clip.values,
        jac,
        clip.reference_frame,
        jacobian_weight=settings.jacobian_weight,
        remove_head=settings.remove_head,
    )
    names = list(blocks)
    widths = [blocks[n].shape[1] for n in names]
    packed = np.concatenate([blocks[n] for n in names], axis=1)
    frames, vals = shapekeys.clip_to_frames(clip.times, packed, scene, start)
    out, pos = {}, 0
    for n, w in zip(names, widths, strict=True):
        out[n] = vals[:, pos : pos + w]
        pos += w
    return frames, out


def _quaternion_groups(channels: list[Channel]) -> list[list[int]]:
    by_prop: dict[tuple, dict[int, int]] = defaultdict(dict)
    for i, c in enumerate(channels):
        if c.data_path.endswith("rotation_quaternion"):
            by_prop[(c.id_data.name, c.data_path)][c.index] = i
    return [[g[j] for j in range(4)] for g in by_prop.values() if sorted(g) == [0, 1, 2, 3]]


_TRANSFORMS = ("location", "rotation_euler", "rotation_quaternion", "rotation_axis_angle", "scale")


def is_head_channel(channel: Channel, head_bone: str) -> bool:
    """The head bone's transform, or an object's own transform: learnt from the head's pose too."""
    path = channel.data_path
    if path in _TRANSFORMS:
        return True
    prefix = f'pose.bones["{bpy.utils.escape_identifier(head_bone)}"].' if head_bone else None
    return bool(prefix) and path.startswith(prefix) and path[len(prefix) :] in _TRANSFORMS


def calibration_prior(scene, clip: MotionClip, sources: list[Source]) -> tuple[dict[tuple[str, str], np.ndarray], str]:
    """The shape keys' calibration bake as a prior for their examples: ``{(Key name, data path): values per scene
    frame}`` from the calibration Bake Shape Keys made for ``scene.fomm.target_object`` (the panel's keys, camera,
    size and model; nothing is rendered here), and a note when there is none to use. Nothing when no example is
    keyed on that object's shape keys."""
    from .pipeline import _same_model, plan_calibration, selected_keys, solve_options
    from .prefs import worker_settings

    s = scene.fomm
    obj = s.target_object
    key = obj.data.shape_keys if obj is not None and obj.type == "MESH" else None
    keyed = key is not None and any(src.id_data == key for src in sources)
    if not s.examples_prior or not keyed or not selected_keys(s, obj):
        return {}, ""
    ws = worker_settings()
    try:
        plan = plan_calibration(scene, ws)
    except FommError:
        return {}, ""
    calib = calibration.cached(ws.cache_dir, plan.key)
    if calib is None:
        return {}, "no calibration of these shape keys yet (Bake Shape Keys makes one to start from)"
    if not _same_model(calib, clip):
        return {}, "the calibration was made with another model than the clip's"
    res = solve_weights(
        calib,
        clip.values,
        clip.jacobians if clip.has_jacobians else None,
        clip.reference_frame,
        keys=plan.names,
        options=solve_options(s),
    )
    # resampled as frame_features resamples the clip's features: one row per scene frame
    _, weights = shapekeys.clip_to_frames(clip.times, res.weights, scene, int(s.start_frame))
    return {(key.name, shapekeys.shape_key_path(n)): weights[:, i] for i, n in enumerate(plan.names)}, ""


def solve(
    sources: list[Source],
    frames: np.ndarray,
    blocks: dict[str, np.ndarray],
    head_bone: str = "",
    prior: dict[tuple[str, str], np.ndarray] | None = None,
) -> list[Solved]:
    """Learn every channel; channels keyed on the same frames are solved together (one set of examples).
    ``prior``: per (ID name, data path) a prediction per frame the examples may correct (:func:`calibration_prior`)."""
    prior = prior or {}
    channels = [c for s in sources for c in s.channels]
    groups: dict[tuple, list[Channel]] = defaultdict(list)
    for c in channels:
        groups[tuple(c.frames.tolist())].append(c)
    first = int(frames[0])
    out: list[Solved] = []
    for key, members in groups.items():
        rows = np.asarray(key, dtype=np.int64) - first
        nan = np.full(len(frames), np.nan)
        columns = [prior.get((c.id_data.name, c.data_path), nan) if c.index == 0 else nan for c in members]
        res = solve_examples(
            blocks,
            rows,
            np.stack([c.values for c in members], axis=1),
            [f"{c.label}" for c in members],
            lower=[c.lower for c in members],
            upper=[c.upper for c in members],
            quaternions=_quaternion_groups(members),
            constant_ok=[c.array for c in members],
            head=[is_head_channel(c, head_bone) for c in members],
            prior=np.stack(columns, axis=1) if any(np.isfinite(col).all() for col in columns) else None,
        )
        for i, (c, fit) in enumerate(zip(members, res.fits, strict=True)):
            out.append(
                Solved(c, res.values[:, i], fit.loo_max, fit.loo_rms, fit.spread, fit.explained, fit.model, fit.prior)
            )
    return out


def _handle_unexplained(solved: list[Solved], mode: str) -> list[Solved]:
    bad = [s for s in solved if not s.explained]
    if not bad or mode == "BAKE":
        return solved
    if mode == "SKIP":
        kept = [s for s in solved if s.explained]
        if not kept:
            raise FommError("the clip's motion explains none of the keyed channels: nothing was baked")
        return kept
    worst = max(bad, key=lambda s: s.loo_rms / max(s.spread, 1e-12))
    raise FommError(
        f"the clip's motion cannot explain {len(bad)} keyed channel(s), e.g. '{worst.channel.label}' "
        f"(each example predicted within {worst.loo_max:.3g} by the others, spread {worst.spread:.3g}): "
        "add examples, or set Unexplained Channels to Bake Anyway or Skip"
    )


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _clip_record(clip: MotionClip) -> str:
    return json.dumps({"model": clip.checkpoint_hash or "", "num_kp": int(clip.num_kp)}, sort_keys=True)


def check_clip_model(sources: list[Source], clip: MotionClip, accept: bool) -> None:
    """FommError if the examples were last learned from a clip of another model (unless ``accept``)."""
    if accept:
        return
    now = _clip_record(clip)
    for src in sources:
        before = src.action.get(CLIP_PROP)
        if before and before != now:
            was = json.loads(before)
            raise FommError(
                f"the examples in '{src.action.name}' were learned from a clip of another model "
                f"({was['num_kp']} keypoints, model {was['model'][:16] or 'unknown'}): extract the clip with that "
                "model, or tick Accept Another Model to learn them from this clip"
            )


def _detach_examples(src: Source) -> None:
    """Unassign the user's examples action from its ID (kept with a fake user) and remember it there."""
    adt = src.id_data.animation_data
    src.id_data[EXAMPLES_PROP] = src.action.name
    src.id_data[SLOT_PROP] = src.slot.identifier if src.slot is not None else ""
    src.action.use_fake_user = True
    if adt is not None and adt.action == src.action:
        adt.action = None


def write(sources: list[Source], solved: list[Solved], frames: np.ndarray, settings, clip) -> list[str]:
    """Write the solved channels, one new action per ID; returns the actions' names."""
    by_id: dict[tuple[str, str], list[Solved]] = defaultdict(list)
    for s in solved:
        by_id[(s.channel.id_data.name, s.channel.id_data.id_type)].append(s)
    for items in by_id.values():
        id_data = items[0].channel.id_data
        if not _plays_examples(id_data, sources):
            anim.check_placement(id_data, settings.placement)
    record = _clip_record(clip)
    names = []
    for items in by_id.values():
        id_data = items[0].channel.id_data
        for src in sources:
            if src.id_data == id_data:
                src.action[CLIP_PROP] = record
                _detach_examples(src)
        curves = [anim.Curve(s.channel.data_path, s.channel.index, frames, s.values, "FOMM Examples") for s in items]
        tolerance = settings.tolerance if isinstance(id_data, bpy.types.Key) else settings.bone_tolerance
        report = anim.write_action(id_data, curves, kind=KIND, placement=settings.placement, tolerance=tolerance)
        baked = bpy.data.actions[report.action]
        written = {(c.data_path, c.index) for c in curves}
        for src in sources:
            if src.id_data == id_data:
                _pass_through(baked, [fc for fc in _fcurves(src) if (fc.data_path, fc.array_index) not in written])
        baked[EXAMPLES_PROP] = str(id_data.get(EXAMPLES_PROP, ""))
        baked[DIGEST_PROP] = action_digest(baked)
        names.append(report.action)
    return names


_KEY_FLOATS = (("co", 2), ("handle_left", 2), ("handle_right", 2))
_KEY_ENUMS = ("interpolation", "handle_left_type", "handle_right_type", "easing", "type")


def _pass_through(baked: bpy.types.Action, fcurves: list[bpy.types.FCurve]) -> None:
    """Copy the examples action's other curves (channels not learned: the body's animation, keys outside the clip,
    skipped channels) into the bake as they are, so that the bake plays them as the examples action did."""
    if not fcurves:
        return
    bag = anim.ensure_channelbag(baked, baked.slots[0])
    for fc in fcurves:
        new = bag.fcurves.new(fc.data_path, index=fc.array_index)
        n = len(fc.keyframe_points)
        new.keyframe_points.add(n)
        for attr, width in _KEY_FLOATS:
            buf = np.empty(width * n, dtype=np.float32)
            fc.keyframe_points.foreach_get(attr, buf)
            new.keyframe_points.foreach_set(attr, buf)
        for attr in _KEY_ENUMS:
            buf = np.empty(n, dtype=np.int32)
            fc.keyframe_points.foreach_get(attr, buf)
            new.keyframe_points.foreach_set(attr, buf)
        new.extrapolation = fc.extrapolation
        new.mute = fc.mute
        new.update()


def _plays_examples(id_data, sources) -> bool:
    adt = id_data.animation_data
    return adt is not None and any(s.id_data == id_data and adt.action == s.action for s in sources)


def store_report(settings, solved: list[Solved], skipped: list[Solved]) -> None:
    """The per-channel leave-one-out errors for the panel."""
    settings.example_channels.clear()
    for s in [*solved, *skipped]:
        item = settings.example_channels.add()
        item.name = s.channel.label
        item.loo = s.loo_max
        item.spread = s.spread
        item.explained = s.explained
        item.baked = s in solved


def action_digest(action: bpy.types.Action) -> str:
    """A short hash of every key of ``action`` (paths, frames, values)."""
    h = hashlib.sha256()
    for fc in sorted(anim.action_fcurves(action), key=lambda f: (f.data_path, f.array_index)):
        co = np.empty(2 * len(fc.keyframe_points), dtype=np.float32)
        fc.keyframe_points.foreach_get("co", co)
        h.update(f"{fc.data_path}[{fc.array_index}]".encode())
        h.update(co.tobytes())
    return h.hexdigest()[:16]


def check_bakes_unchanged(scene) -> None:
    """FommError if keys were added to (or changed in) a bake from examples since it was written: a new bake would
    replace them. (Poses are keyed on the examples: Edit Examples makes them the active action again.)"""
    for id_data in target_ids(scene):
        baked = anim.own_action(id_data, KIND)
        if baked is not None and baked.get(DIGEST_PROP) and baked[DIGEST_PROP] != action_digest(baked):
            raise FommError(
                f"keys were added to or changed in the bake '{baked.name}' since it was made, and baking again would "
                "lose them: press Edit Examples and key your poses there (or undo those changes)"
            )


def bake_examples(scene, clip: MotionClip) -> str:
    """Read the examples, learn, write; everything validated before the scene changes."""
    s = scene.fomm
    start = int(s.start_frame)
    frames, blocks = frame_features(clip, scene, start, s)
    check_bakes_unchanged(scene)
    sources = read_examples(scene, int(frames[0]), int(frames[-1]))
    check_clip_model(sources, clip, s.examples_accept_model)
    prior, prior_note = calibration_prior(scene, clip, sources)
    solved_all = solve(sources, frames, blocks, s.head_bone, prior)
    solved = _handle_unexplained(solved_all, s.examples_unexplained)
    actions = write(sources, solved, frames, s, clip)
    skipped = [x for x in solved_all if x not in solved]
    store_report(s, solved, skipped)
    n_examples = len({int(f) for src in sources for c in src.channels for f in c.frames})
    worst = max(solved, key=lambda x: x.loo_max / max(x.spread, 1e-12))
    note = f"; skipped {len(skipped)} the motion cannot explain" if skipped else ""
    if any(x.prior for x in solved):
        note += f"; {sum(x.prior for x in solved)} shape keys started from the calibration"
    elif any((x.channel.id_data.name, x.channel.data_path) in prior for x in solved_all):
        note += "; the calibration predicted the examples no better: learned from the examples alone"
    elif prior_note:
        note += f"; {prior_note}"
    return (
        f"baked {len(solved)} channels from {n_examples} example frames over {len(frames)} frames into "
        f"{', '.join(repr(a) for a in actions)}; least sure: {worst.channel.label}, each example predicted "
        f"within {worst.loo_max:.3g} by the others{note}"
    )


def edit_examples(scene) -> str:
    """Make each ID's remembered examples action active again (its bake from examples is removed)."""
    done = []
    for id_data in target_ids(scene):
        name = id_data.get(EXAMPLES_PROP)
        action = bpy.data.actions.get(name) if name else None
        if action is None:
            continue
        adt = id_data.animation_data or id_data.animation_data_create()
        if adt.action is not None and not anim.is_own_action(adt.action) and adt.action != action:
            raise FommError(
                f"'{id_data.name}' plays your action '{adt.action.name}': unassign it to edit the examples "
                f"in '{action.name}'"
            )
        done.append((id_data, action))
    if not done:
        raise FommError("no examples to edit: key poses on the target, then Bake from Examples")
    for id_data, action in done:
        anim.remove_own_animation(id_data, KIND)
        adt = id_data.animation_data
        adt.action = action
        slot = _slot_for(action, id_data, str(id_data.get(SLOT_PROP, "")))
        if slot is not None and adt.action_slot != slot:
            adt.action_slot = slot
    names = ", ".join(f"'{a.name}'" for _, a in done)
    return f"editing the examples in {names}: pose and key frames, then Bake from Examples"


# --------------------------------------------------------------------------------------------------
# Steps for the operators
# --------------------------------------------------------------------------------------------------


def bake_step(scene):
    """The operator's step: no worker job; the bake happens in ``finish`` (on the main thread)."""
    from .pipeline import Step, read_clip

    clip = read_clip(scene.fomm.clip_path)
    name = scene.name
    return Step(None, lambda _r: bake_examples(bpy.data.scenes[name], clip), "Baking from examples")


def edit_step(scene):
    from .pipeline import Step

    name = scene.name
    return Step(None, lambda _r: edit_examples(bpy.data.scenes[name]), "Editing examples")


def reference_step(scene):
    from . import reference
    from .pipeline import Step, read_clip

    clip = read_clip(scene.fomm.clip_path)
    name = scene.name
    return Step(None, lambda _r: reference.show_reference(bpy.data.scenes[name], clip), "Showing the reference")
