"""The sidebar tab "FOMM" in the 3D View: Source, Extract, Target, Bake, Preview (the workflow's order)."""

from __future__ import annotations

import os

import bpy

from . import shapekeys


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "FOMM"


def draw_job(layout, context, kinds: set[str]) -> bool:
    """Progress bar + Cancel for the running job if it is one of ``kinds``; True if drawn."""
    job = context.window_manager.fomm_job
    if not (job.running and job.kind in kinds):
        return False
    box = layout.box()
    box.progress(factor=job.progress, type="BAR", text=job.message or "working...")  # every supported Blender (4.4+)
    box.operator("fomm.cancel", icon="CANCEL")
    return True


class FOMM_UL_keys(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.prop(item, "use", text="")
        row.label(text=item.name, icon="SHAPEKEY_DATA")


class FOMM_UL_mappings(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.prop(item, "keypoint", text="kp")
        row.prop(item, "axis", text="")
        row.prop(item, "gain", text="")
        row.label(text=item.shape_key or "(pick a key)")


class FOMM_PT_source(_Panel, bpy.types.Panel):
    bl_label = "Source"
    bl_idname = "FOMM_PT_source"

    def draw(self, context):
        s = context.scene.fomm
        layout = self.layout
        layout.use_property_split = True
        layout.prop(s, "video_path")
        layout.prop(s, "crop_mode")
        if s.crop_mode == "BOX":
            col = layout.column(align=True)
            col.prop(s, "crop_x")
            col.prop(s, "crop_y")
            col.prop(s, "crop_size")
        col = layout.column(align=True)
        col.prop(s, "video_start", text="Frames Start")
        col.prop(s, "video_end", text="End")
        col.prop(s, "video_step", text="Step")
        layout.prop(s, "reference_mode")
        if s.reference_mode == "FRAME":
            layout.prop(s, "reference_frame")


class FOMM_PT_extract(_Panel, bpy.types.Panel):
    bl_label = "Extract"
    bl_idname = "FOMM_PT_extract"

    def draw(self, context):
        s = context.scene.fomm
        layout = self.layout
        layout.use_property_split = True
        layout.prop(s, "smoothing")
        if not draw_job(layout, context, {"fomm.extract_motion", "fomm.check_worker"}):
            layout.operator("fomm.extract_motion", icon="TRACKING")
        layout.prop(s, "clip_path")
        path = bpy.path.abspath(s.clip_path) if s.clip_path else ""
        if path and os.path.isfile(path):
            from .pipeline import read_clip

            try:
                clip = read_clip(s.clip_path)
            except Exception as exc:  # shown, not raised: drawing must not fail
                layout.label(text=str(exc), icon="ERROR")
            else:
                layout.label(text=f"{clip.num_frames} frames, {clip.fps:.2f} fps, {clip.num_kp} keypoints", icon="INFO")


class FOMM_PT_target(_Panel, bpy.types.Panel):
    bl_label = "Target"
    bl_idname = "FOMM_PT_target"

    def draw(self, context):
        s = context.scene.fomm
        layout = self.layout
        layout.use_property_split = True
        layout.prop(s, "target_object")
        if s.target_object is not None and not shapekeys.bakeable_keys(s.target_object):
            layout.label(text="This mesh has no shape keys", icon="ERROR")
        layout.prop(s, "armature_object")
        if s.armature_object is not None:
            layout.prop_search(s, "head_bone", s.armature_object.data, "bones")
        layout.prop(s, "camera_object")


class FOMM_PT_bake(_Panel, bpy.types.Panel):
    bl_label = "Bake"
    bl_idname = "FOMM_PT_bake"

    def draw(self, context):
        s = context.scene.fomm
        layout = self.layout
        layout.prop(s, "method", expand=True)
        if s.method == "CALIBRATED":
            row = layout.row()
            row.template_list("FOMM_UL_keys", "", s, "keys", s, "keys_index", rows=4)
            col = row.column(align=True)
            col.operator("fomm.refresh_keys", text="", icon="FILE_REFRESH")
            col.operator("fomm.select_keys", text="", icon="CHECKBOX_HLT").use = True
            col.operator("fomm.select_keys", text="", icon="CHECKBOX_DEHLT").use = False
            split = layout.column()
            split.use_property_split = True
            split.prop(s, "auto_neutral")
            split.prop(s, "regularization")
            split.prop(s, "jacobian_weight")
            split.prop(s, "calibration_size")
            row = layout.row(align=True)
            row.operator("fomm.calibrate", icon="RESTRICT_RENDER_OFF")
            if s.calibration_path:
                layout.label(text=f"Calibration: {os.path.basename(os.path.dirname(s.calibration_path))}")
        else:
            row = layout.row()
            row.template_list("FOMM_UL_mappings", "", s, "mappings", s, "mappings_index", rows=3)
            col = row.column(align=True)
            col.operator("fomm.mapping_add", text="", icon="ADD")
            col.operator("fomm.mapping_remove", text="", icon="REMOVE")
            if 0 <= s.mappings_index < len(s.mappings) and s.target_object is not None:
                item = s.mappings[s.mappings_index]
                key = s.target_object.data.shape_keys if s.target_object.type == "MESH" else None
                if key is not None:
                    layout.prop_search(item, "shape_key", key, "key_blocks")
        col = layout.column()
        col.use_property_split = True
        col.prop(s, "remove_head")
        col.prop(s, "adapt_scale")
        col.prop(s, "smooth_sigma")
        col.prop(s, "tolerance")
        col.prop(s, "placement")
        col.prop(s, "start_frame")
        if not draw_job(layout, context, {"fomm.bake_shape_keys", "fomm.calibrate"}):
            layout.operator("fomm.bake_shape_keys", icon="SHAPEKEY_DATA")
        layout.separator()
        col = layout.column()
        col.use_property_split = True
        col.prop(s, "bone_mode")
        if s.bone_mode == "HEAD":
            col.prop(s, "head_units")
            col.prop(s, "head_translation")
            col.prop(s, "head_scale")
        col.prop(s, "bone_tolerance")
        layout.operator("fomm.bake_bones", icon="BONE_DATA")
        if s.last_report:
            layout.label(text=s.last_report, icon="CHECKMARK")


class FOMM_UL_example_channels(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        warn = not item.explained
        row.label(text=item.name, icon="ERROR" if warn else ("CHECKMARK" if item.baked else "X"))
        row.label(text=f"within {item.loo:.3g}" + ("" if item.baked else " (skipped)"))


class FOMM_PT_examples(_Panel, bpy.types.Panel):
    """Bake from Examples: pose the target on a few frames against the reference video, learn the rest."""

    bl_label = "Bake from Examples"
    bl_idname = "FOMM_PT_examples"

    def draw(self, context):
        s = context.scene.fomm
        layout = self.layout
        layout.operator("fomm.show_reference", icon="FILE_MOVIE")
        layout.label(text="Scrub, pose the target, insert keyframes", icon="INFO")
        col = layout.column()
        col.use_property_split = True
        col.prop(s, "examples_action")
        col.prop(s, "examples_unexplained")
        col.prop(s, "examples_prior")
        col.prop(s, "examples_accept_model")
        row = layout.row(align=True)
        row.operator("fomm.bake_from_examples", icon="KEYFRAME_HLT")
        row.operator("fomm.edit_examples", icon="GREASEPENCIL")
        if len(s.example_channels):
            layout.label(text="Each example predicted by the others:")
            layout.template_list(
                "FOMM_UL_example_channels", "", s, "example_channels", s, "example_channels_index", rows=4
            )


class FOMM_PT_preview(_Panel, bpy.types.Panel):
    bl_label = "Preview"
    bl_idname = "FOMM_PT_preview"

    def draw(self, context):
        s = context.scene.fomm
        layout = self.layout
        layout.use_property_split = True
        layout.prop(s, "preview_source")
        if s.preview_source == "IMAGE":
            layout.prop(s, "preview_image")
        layout.prop(s, "preview_mode")
        if not draw_job(layout, context, {"fomm.neural_preview"}):
            layout.operator("fomm.neural_preview", icon="IMAGE_DATA")


classes = (
    FOMM_UL_keys,
    FOMM_UL_mappings,
    FOMM_PT_source,
    FOMM_PT_extract,
    FOMM_PT_target,
    FOMM_PT_bake,
    FOMM_UL_example_channels,
    FOMM_PT_examples,
    FOMM_PT_preview,
)


register, unregister = bpy.utils.register_classes_factory(classes)  # in order; reversed
