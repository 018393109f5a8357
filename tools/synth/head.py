"""Build the procedural head in the current Blender scene: one mesh with shape keys, optional armature.

Display names of the shape keys follow a naming style so the add-on can be tested on rigs with no
naming convention: ``"semantic"`` (``jaw_open``), ``"arkit"`` (``jawOpen``, ``mouthSmileLeft``...),
``"custom"`` (arbitrary names such as ``Key 3`` or ``MouthA``, drawn from the seed), or an explicit
dict id -> name. :class:`HeadRig` returns the mapping actually used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy
import numpy as np
from mathutils import Euler, Matrix, Quaternion, Vector

from .geometry import HeadParams, draw_head_params, head_geometry, head_topology
from .performance import CURVE_IDS

NAMING_STYLES = ("semantic", "arkit", "custom")

ARKIT_NAMES = {
    "jaw_open": "jawOpen",
    "smile_L": "mouthSmileLeft",
    "smile_R": "mouthSmileRight",
    "blink_L": "eyeBlinkLeft",
    "blink_R": "eyeBlinkRight",
    "brow_raise_L": "browOuterUpLeft",
    "brow_raise_R": "browOuterUpRight",
    "pucker": "mouthPucker",
}

_CUSTOM_POOL = (
    "MouthA",
    "MouthB",
    "Mouth_O",
    "Jaw",
    "JawDown",
    "Lids",
    "EyeL",
    "EyeR",
    "Smirk",
    "Happy",
    "Happy.001",
    "Brows",
    "BrowUp",
    "Kiss",
    "oo",
    "aa",
    "Shape",
    "Shape.001",
    "Shape.002",
    "target_7",
    "morph_12",
    "blend3",
    "Expression",
    "FaceA",
    "FaceB",
    "Ctrl",
    "sk_a",
    "sk_b",
    "Left",
    "Right",
    "Up",
)
_BONE_NAMES = ("head", "Head", "Bone", "DEF-head", "mixamorig:Head", "Head_jnt", "neck_01", "b_head")


@dataclass
class HeadRig:
    """What :func:`build_head` made.

    ``mesh``: the head mesh object (shape keys on ``mesh.data.shape_keys``, ``Basis`` first);
    ``armature``: the armature object or None; ``bone_name``: its head bone (or None);
    ``names``: semantic id -> shape-key display name; ``params``: the identity;
    ``landmark_names`` / ``landmark_vertices``: the named mesh points saved as 2-D landmarks.
    """

    mesh: bpy.types.Object
    armature: bpy.types.Object | None
    bone_name: str | None
    names: dict[str, str]
    params: HeadParams
    landmark_names: tuple[str, ...]
    landmark_vertices: np.ndarray
    identity: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def objects(self) -> list[bpy.types.Object]:
        return [o for o in (self.mesh, self.armature) if o is not None]

    @property
    def driven_object(self) -> bpy.types.Object:
        """The object whose transform (or head bone) carries head motion."""
        return self.armature if self.armature is not None else self.mesh


def shape_key_names(naming: str | dict[str, str], seed: int = 0) -> dict[str, str]:
    """Semantic id -> display name for a naming style (or check and return an explicit mapping)."""
    if isinstance(naming, dict):
        missing = [k for k in CURVE_IDS if k not in naming]
        if missing:
            raise ValueError(f"naming dict lacks ids {missing}")
        names = {k: str(naming[k]) for k in CURVE_IDS}
    elif naming == "semantic":
        names = {k: k for k in CURVE_IDS}
    elif naming == "arkit":
        names = dict(ARKIT_NAMES)
    elif naming == "custom":
        rng = np.random.default_rng([int(seed), 0xC0DE])
        pool = list(_CUSTOM_POOL) + [f"Key {i}" for i in range(1, 40)]
        picks = rng.choice(len(pool), size=len(CURVE_IDS), replace=False)
        names = {k: pool[i] for k, i in zip(CURVE_IDS, picks, strict=True)}
    else:
        raise ValueError(f"unknown naming style {naming!r}; use one of {NAMING_STYLES} or a dict")
    if len(set(names.values())) != len(names) or "Basis" in names.values():
        raise ValueError("shape-key display names must be distinct and not 'Basis'")
    return names


def _material(name: str, rgb) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.diffuse_color = (*rgb, 1.0)
    mat.roughness = 0.6
    mat.metallic = 0.0
    mat.specular_intensity = 0.2
    return mat


def build_head(
    seed: int,
    naming: str | dict[str, str] = "semantic",
    *,
    with_armature: bool = False,
    bone_name: str | None = None,
    name: str | None = None,
    params: HeadParams | None = None,
    collection: bpy.types.Collection | None = None,
) -> HeadRig:
    """Build one procedural head (identity drawn from ``seed``) in the current scene.

    The mesh's origin is the neck pivot; its shape keys (relative to ``Basis``, 0..1) are named by
    ``naming``. With ``with_armature`` an armature with one head bone (``bone_name`` or a name drawn
    from the seed) holds the mesh through an Armature modifier.
    """
    params = params or draw_head_params(seed)
    names = shape_key_names(naming, seed)
    topo = head_topology(params)
    basis = head_geometry(params)
    collection = collection or bpy.context.scene.collection
    name = name or f"SynthHead_{seed}"

    me = bpy.data.meshes.new(name)
    me.vertices.add(len(basis))
    me.vertices.foreach_set("co", basis.astype(np.float32).ravel())
    nf = len(topo.faces)
    me.loops.add(nf * 4)
    me.loops.foreach_set("vertex_index", topo.faces.ravel())
    me.polygons.add(nf)
    me.polygons.foreach_set("loop_start", np.arange(0, nf * 4, 4, dtype=np.int32))
    if hasattr(me.polygons[0], "loop_total") and bpy.app.version < (4, 0, 0):  # pragma: no cover
        me.polygons.foreach_set("loop_total", np.full(nf, 4, dtype=np.int32))
    me.update(calc_edges=True)
    me.validate(verbose=False)
    mat_index = {}
    for mname in topo.material_names:
        mat_index[mname] = len(me.materials)
        me.materials.append(_material(f"{name}_{mname}", params.colors[mname]))
    me.polygons.foreach_set("material_index", np.array([mat_index[m] for m in topo.face_materials], np.int32))
    me.polygons.foreach_set("use_smooth", np.ones(nf, dtype=bool))
    me.update()

    ob = bpy.data.objects.new(name, me)
    collection.objects.link(ob)
    ob.shape_key_add(name="Basis", from_mix=False)
    for sid in CURVE_IDS:
        kb = ob.shape_key_add(name=names[sid], from_mix=False)
        kb.data.foreach_set("co", head_geometry(params, {sid: 1.0}).astype(np.float32).ravel())
        kb.slider_min, kb.slider_max = 0.0, 1.0
        kb.value = 0.0
    me.shape_keys.use_relative = True

    arm_ob = None
    bname = None
    if with_armature:
        rng = np.random.default_rng([int(seed), 0xB0E])
        bname = bone_name or str(_BONE_NAMES[rng.integers(len(_BONE_NAMES))])
        arm = bpy.data.armatures.new(f"{name}_rig")
        arm_ob = bpy.data.objects.new(f"{name}_rig", arm)
        collection.objects.link(arm_ob)
        prev_active = bpy.context.view_layer.objects.active
        bpy.context.view_layer.objects.active = arm_ob
        bpy.ops.object.mode_set(mode="EDIT")
        eb = arm.edit_bones.new(bname)
        eb.head = (0.0, 0.0, 0.0)
        eb.tail = (0.0, 0.0, 0.6)
        eb.roll = 0.0
        bpy.ops.object.mode_set(mode="OBJECT")
        bpy.context.view_layer.objects.active = prev_active
        vg = ob.vertex_groups.new(name=bname)
        vg.add(range(len(basis)), 1.0, "REPLACE")
        mod = ob.modifiers.new("Armature", "ARMATURE")
        mod.object = arm_ob
        ob.parent = arm_ob
        arm_ob.pose.bones[bname].rotation_mode = "QUATERNION"
    ob.rotation_mode = "YXZ"
    return HeadRig(ob, arm_ob, bname, names, params, topo.landmark_names, topo.landmark_vertices, identity=name)


def head_pose_values(rig: HeadRig, rotation, translation) -> tuple[str, list[float], str, list[float]]:
    """Channel data for one head pose: (rotation path, values, location path, values).

    ``rotation`` = (yaw, pitch, roll) radians, world rotation ``Rz(yaw) @ Rx(pitch) @ Ry(roll)`` about the
    neck pivot; ``translation`` world (x, y, z). Without an armature this is the mesh object's
    ``rotation_euler`` (mode YXZ) and ``location``; with one, the head bone's quaternion and location
    expressed in the bone's rest frame.
    """
    yaw, pitch, roll = (float(a) for a in rotation)
    if rig.armature is None:
        return "rotation_euler", [pitch, roll, yaw], "location", [float(x) for x in translation]
    bone = rig.armature.data.bones[rig.bone_name]
    rest = bone.matrix_local.to_3x3()
    world = Euler((pitch, roll, yaw), "YXZ").to_matrix()
    local = (rest.inverted() @ world @ rest).to_quaternion()
    loc = rest.inverted() @ Vector([float(x) for x in translation])
    prefix = f'pose.bones["{bpy.utils.escape_identifier(rig.bone_name)}"]'
    return f"{prefix}.rotation_quaternion", list(local), f"{prefix}.location", list(loc)


def set_head_pose(rig: HeadRig, rotation, translation) -> None:
    """Set (without keyframes) the head rotation (yaw, pitch, roll) and translation."""
    rpath, rvals, lpath, lvals = head_pose_values(rig, rotation, translation)
    target = rig.driven_object
    if rig.armature is None:
        target.rotation_euler = rvals
        target.location = lvals
    else:
        pb = target.pose.bones[rig.bone_name]
        pb.rotation_quaternion = Quaternion(rvals)
        pb.location = lvals


def set_expression(rig: HeadRig, values: dict[str, float]) -> None:
    """Set shape-key values by semantic id (others keep their value)."""
    kbs = rig.mesh.data.shape_keys.key_blocks
    for sid, v in values.items():
        kbs[rig.names[sid]].value = float(v)


__all__ = [
    "HeadRig",
    "build_head",
    "shape_key_names",
    "set_head_pose",
    "set_expression",
    "head_pose_values",
    "NAMING_STYLES",
    "ARKIT_NAMES",
    "Matrix",
]
