"""All of the add-on's properties: the scene's inputs (``scene.fomm``) and the running job's state
(``window_manager.fomm_job``, not saved in the file)."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ml_core.arkit import ARKIT_NAMES
from ml_core.retarget import SolveOptions

ARKIT_ITEMS = [("NONE", "(none)", "Not exported")] + [(n, n, f"ARKit blendshape {n}") for n in ARKIT_NAMES]
SOLVE = SolveOptions()  # the solve's defaults: the Bake panel starts from these


def _is_mesh(_self, obj) -> bool:
    return obj.type == "MESH"


def _is_armature(_self, obj) -> bool:
    return obj.type == "ARMATURE"


def _is_camera(_self, obj) -> bool:
    return obj.type == "CAMERA"


def _target_changed(self, _context) -> None:
    from .pipeline import sync_key_list

    sync_key_list(self, self.target_object)
    from .export import fill_arkit_map

    fill_arkit_map(self, self.target_object)


class FOMM_PG_key_item(bpy.types.PropertyGroup):
    """One shape key of the target, ticked to be baked."""

    # ``name`` (the shape key's name) comes with PropertyGroup
    use: BoolProperty(name="Bake", default=True, description="Bake this shape key")


class FOMM_PG_mapping(bpy.types.PropertyGroup):
    """Manual mapping: a keypoint's motion along one axis drives one shape key."""

    shape_key: StringProperty(name="Shape Key", description="Shape key to drive")
    keypoint: IntProperty(name="Keypoint", min=0, default=0, description="Keypoint index (0-based)")
    axis: EnumProperty(
        name="Axis",
        items=[
            ("X", "X", "Horizontal motion (right is positive)"),
            ("Y", "Y", "Vertical motion (down is positive)"),
        ],
        default="Y",
    )
    gain: FloatProperty(
        name="Gain",
        default=5.0,
        soft_min=-50,
        soft_max=50,
        description="Weight per unit of motion (normalised image units, 2 = the whole frame); negative flips",
    )


class FOMM_PG_arkit_item(bpy.types.PropertyGroup):
    """One row of the ARKit mapping table: a shape key of the target and the ARKit blendshape it plays."""

    # ``name`` (the shape key's name) comes with PropertyGroup
    arkit: EnumProperty(
        name="ARKit",
        items=ARKIT_ITEMS,
        default="NONE",
        description="The ARKit blendshape this shape key plays in exports (Live Link Face CSV)",
    )


class FOMM_PG_example_channel(bpy.types.PropertyGroup):
    """One channel of the last bake from examples: how well the others predict each of its examples."""

    # ``name``: the channel's label
    loo: FloatProperty(name="Leave-One-Out Error", description="Largest error predicting an example from the others")
    spread: FloatProperty(name="Spread", description="Standard deviation of the channel's example values")
    explained: BoolProperty(name="Explained", default=True)
    baked: BoolProperty(name="Baked", default=True)


class FOMM_PG_settings(bpy.types.PropertyGroup):
    """The inputs of every step, organised like the panels: Source, Extract, Target, Bake, Preview."""

    # -- Source ----------------------------------------------------------------------------------
    video_path: StringProperty(name="Video", subtype="FILE_PATH", description="Driving video (the performance)")
    crop_mode: EnumProperty(
        name="Crop",
        items=[
            ("AUTO", "Face", "Find the face and frame it as the model expects (the embedded models follow it)"),
            ("FOLLOW", "Follow Face", "Crop every frame around the face where it is (head motion is kept)"),
            ("STEADY", "Steady Face Box", "Find the face and keep one steady square around it"),
            ("FULL", "Full Frame", "The whole frame, padded to a square (never stretched)"),
            ("BOX", "Box", "A square box given in pixels"),
        ],
        default="AUTO",
    )
    crop_x: IntProperty(name="X", min=0, description="Left edge of the crop box (pixels)")
    crop_y: IntProperty(name="Y", min=0, description="Top edge of the crop box (pixels)")
    crop_size: IntProperty(name="Size", min=0, default=256, description="Side of the crop box (pixels)")
    video_start: IntProperty(name="Start", min=0, default=0, description="First video frame to use")
    video_end: IntProperty(name="End", min=0, default=0, description="Last video frame to use (0 = to the end)")
    video_step: IntProperty(name="Step", min=1, default=1, description="Use every n-th frame")
    reference_mode: EnumProperty(
        name="Reference",
        items=[
            ("AUTO", "Automatic", "The most neutral-looking frame of the clip"),
            ("FRAME", "Frame", "A video frame you choose"),
        ],
        default="AUTO",
    )
    reference_frame: IntProperty(name="Reference Frame", min=0, description="The neutral video frame")

    # -- Extract ---------------------------------------------------------------------------------
    smoothing: EnumProperty(
        name="Smoothing",
        items=[
            ("NONE", "None", "Keypoints as detected"),
            ("ONE_EURO", "One Euro", "One Euro filter, zero-lag (forward-backward)"),
        ],
        default="NONE",
    )
    clip_path: StringProperty(
        name="Motion Clip",
        subtype="FILE_PATH",
        description="The motion clip (.npz) to bake: made by Extract, or one made elsewhere (CLI, render farm)",
    )

    # -- Target ----------------------------------------------------------------------------------
    target_object: PointerProperty(
        name="Face Mesh",
        type=bpy.types.Object,
        poll=_is_mesh,
        update=_target_changed,
        description="The character's mesh with shape keys",
    )
    armature_object: PointerProperty(
        name="Armature",
        type=bpy.types.Object,
        poll=_is_armature,
        description="Armature whose head bone to drive",
    )
    head_bone: StringProperty(name="Head Bone", description="The bone that carries the head's motion")
    camera_object: PointerProperty(
        name="Camera",
        type=bpy.types.Object,
        poll=_is_camera,
        description="Camera looking at the face (calibration renders, head view); empty = automatic front view",
    )

    # -- Bake ------------------------------------------------------------------------------------
    keys: CollectionProperty(type=FOMM_PG_key_item)
    keys_index: IntProperty()
    method: EnumProperty(
        name="Method",
        items=[
            (
                "CALIBRATED",
                "Calibrated",
                "Render the face with each shape key and solve for weights (any rig)",
            ),
            ("MANUAL", "Manual", "Map a keypoint's motion to a shape key with a gain"),
        ],
        default="CALIBRATED",
    )
    mappings: CollectionProperty(type=FOMM_PG_mapping)
    mappings_index: IntProperty()
    regularization: FloatProperty(
        name="Regularisation",
        default=SOLVE.regularization,
        min=0.0,
        soft_max=1.0,
        precision=4,
        description="Pulls weights towards 0 when the motion does not call for them (relative)",
    )
    jacobian_weight: FloatProperty(
        name="Jacobian Weight",
        default=SOLVE.jacobian_weight,
        min=0.0,
        soft_max=2.0,
        description="How much the keypoints' local rotation/stretch counts against their motion",
    )
    remove_head: BoolProperty(
        name="Remove Head Motion",
        default=SOLVE.remove_head,
        description="Solve expressions only (head motion goes to bones)",
    )
    auto_neutral: BoolProperty(
        name="Find Neutral Frame",
        default=SOLVE.auto_neutral,
        description="Measure motion from the clip's most neutral frame as the calibration sees it "
        "(off: from the clip's reference frame)",
    )
    adapt_scale: BoolProperty(
        name="Adapt Movement Scale",
        default=SOLVE.adapt_scale,
        description="Scale motion by the size of the character's face against the performer's",
    )
    smooth_sigma: FloatProperty(
        name="Smooth",
        default=SOLVE.smooth_sigma,
        min=0.0,
        soft_max=5.0,
        description="Gaussian smoothing of the weights (frames)",
    )
    calibration_size: IntProperty(
        name="Render Size",
        default=256,
        min=64,
        max=1024,
        description="Side of the calibration renders (pixels)",
    )
    placement: EnumProperty(
        name="Place As",
        items=[
            ("ACTIVE", "Active Action", "The bake becomes the active action"),
            ("NLA", "NLA Strip", "The bake goes on its own NLA track, leaving the active action alone"),
        ],
        default="ACTIVE",
    )
    tolerance: FloatProperty(
        name="Key Reduction",
        default=0.01,
        min=0.0,
        soft_max=0.1,
        precision=4,
        description="Largest change reduction may make to a curve (0 = a key on every frame)",
    )
    bone_tolerance: FloatProperty(
        name="Bone Key Reduction",
        default=0.001,
        min=0.0,
        soft_max=0.05,
        precision=4,
        description="Largest change reduction may make to a bone curve (scene units or radians; 0 = off)",
    )
    start_frame: IntProperty(name="Start Frame", default=1, description="Scene frame of the clip's first sample")
    bone_mode: EnumProperty(
        name="Bones",
        items=[
            ("CONTROL", "Control Rig", "One bone per keypoint on a plane in front of the face"),
            ("HEAD", "Head Bone", "Drive the head bone of an existing armature with the head's motion"),
        ],
        default="CONTROL",
    )
    head_units: FloatProperty(
        name="Translation Scale",
        default=0.15,
        min=0.0,
        soft_max=2.0,
        subtype="DISTANCE",
        description="World distance per half frame of head movement in the video",
    )
    head_translation: BoolProperty(name="Translation", default=True, description="Move the head bone")
    head_scale: BoolProperty(name="Scale", default=False, description="Scale the head bone as the face grows")

    # -- Bake from examples -----------------------------------------------------------------------
    examples_action: PointerProperty(
        name="Examples",
        type=bpy.types.Action,
        description="Action holding the example poses (empty: the keys on the target's own channels)",
    )
    examples_unexplained: EnumProperty(
        name="Unexplained Channels",
        items=[
            ("STOP", "Stop", "Stop and say which channel the clip's motion cannot explain"),
            ("BAKE", "Bake Anyway", "Bake them too"),
            ("SKIP", "Skip", "Leave them out of the bake"),
        ],
        default="STOP",
        description="What to do with a keyed channel whose examples the others cannot predict",
    )
    examples_prior: BoolProperty(
        name="Start from Calibration",
        default=True,
        description=(
            "Shape keys: start from the calibration by rendering that Bake Shape Keys made for this character, and "
            "learn from the examples what it misses (used only when it predicts the examples better than they "
            "predict each other)"
        ),
    )
    examples_accept_model: BoolProperty(
        name="Accept Another Model",
        default=False,
        description="Learn the examples from this clip although they were last learned from a clip of another model",
    )
    example_channels: CollectionProperty(type=FOMM_PG_example_channel)
    example_channels_index: IntProperty()

    # -- Preview ---------------------------------------------------------------------------------
    preview_source: EnumProperty(
        name="Source",
        items=[
            ("RENDER", "Render Face", "Render the character's neutral face as the source"),
            ("IMAGE", "Image", "Animate an image of your choice"),
        ],
        default="RENDER",
    )
    preview_image: StringProperty(name="Image", subtype="FILE_PATH", description="Source image to animate")
    preview_mode: EnumProperty(
        name="Motion",
        items=[
            ("relative", "Relative", "Motion relative to the clip's reference frame (the paper's default)"),
            ("absolute", "Absolute", "Keypoints as detected in the video"),
        ],
        default="relative",
    )

    # -- Export (issue 14: ARKit names, Live Link Face CSV, one take) ------------------------------
    arkit_map: CollectionProperty(type=FOMM_PG_arkit_item)
    arkit_index: IntProperty()
    one_take: BoolProperty(
        name="One Take",
        default=True,
        description="Join the shape-key and head-bone bakes into one action (one glTF animation, one FBX take)",
    )

    # -- Last results (shown in the panels) ------------------------------------------------------
    last_report: StringProperty(name="Last Result", default="")
    calibration_path: StringProperty(name="Calibration", subtype="FILE_PATH", default="")


class FOMM_PG_job(bpy.types.PropertyGroup):
    """The running worker job (one at a time), for the panels' progress bar and Cancel button."""

    running: BoolProperty(default=False)
    kind: StringProperty(default="")
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty(default="")
    cancel_requested: BoolProperty(default=False)


classes = (
    FOMM_PG_key_item,
    FOMM_PG_mapping,
    FOMM_PG_arkit_item,
    FOMM_PG_example_channel,
    FOMM_PG_settings,
    FOMM_PG_job,
)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.fomm = PointerProperty(type=FOMM_PG_settings)
    bpy.types.WindowManager.fomm_job = PointerProperty(type=FOMM_PG_job)


def unregister() -> None:
    del bpy.types.WindowManager.fomm_job
    del bpy.types.Scene.fomm
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
