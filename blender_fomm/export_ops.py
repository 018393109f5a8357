"""Export operators and panel: the ARKit mapping table, the Live Link Face CSV, the FBX take (see :mod:`.export`)."""

from __future__ import annotations

import bpy
from bpy_extras.io_utils import ExportHelper

from ml_core.errors import FommError

from . import export
from .operators import target_has_keys
from .ui import _Panel


def _run(op, context, fn) -> set[str]:
    try:
        line = fn()
    except FommError as exc:
        op.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    context.scene.fomm.last_report = line
    op.report({"INFO"}, line)
    return {"FINISHED"}


class FOMM_OT_arkit_fill(bpy.types.Operator):
    """List the target's shape keys in the ARKit table, each mapped to the ARKit name it spells"""

    bl_idname = "fomm.arkit_fill"
    bl_label = "Fill from Names"
    bl_options = {"REGISTER", "UNDO"}

    keep_edits: bpy.props.BoolProperty(
        name="Keep Edits", default=True, description="Keys already in the table keep their mapping"
    )

    @classmethod
    def poll(cls, context):
        return target_has_keys(cls, context)

    def execute(self, context):
        s = context.scene.fomm

        def fill() -> str:
            n = export.fill_arkit_map(s, s.target_object, keep_edits=self.keep_edits)
            return f"{n} of {len(s.arkit_map)} shape keys map to ARKit names"

        return _run(self, context, fill)


class FOMM_OT_export_livelink_csv(bpy.types.Operator, ExportHelper):
    """Save the baked take as a Live Link Face CSV (Unreal, Faceit): ARKit shapes and head angles per frame"""

    bl_idname = "fomm.export_livelink_csv"
    bl_label = "Export Live Link Face CSV"
    bl_options = {"REGISTER"}

    filename_ext = ".csv"
    filter_glob: bpy.props.StringProperty(default="*.csv", options={"HIDDEN"})

    def execute(self, context):
        return _run(self, context, lambda: export.export_livelink_csv(context.scene, self.filepath))


class FOMM_OT_export_fbx(bpy.types.Operator, ExportHelper):
    """Save the character with the baked take as FBX: shape-key and bone animation in one take (Unity, Unreal)"""

    bl_idname = "fomm.export_fbx"
    bl_label = "Export FBX Take"
    bl_options = {"REGISTER"}

    filename_ext = ".fbx"
    filter_glob: bpy.props.StringProperty(default="*.fbx", options={"HIDDEN"})

    def execute(self, context):
        return _run(self, context, lambda: export.export_fbx(context.scene, self.filepath))


class FOMM_UL_arkit(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.label(text=item.name, icon="SHAPEKEY_DATA")
        row.prop(item, "arkit", text="")


class FOMM_PT_export(_Panel, bpy.types.Panel):
    bl_label = "Export"
    bl_idname = "FOMM_PT_export"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.fomm
        layout = self.layout
        layout.prop(s, "one_take")
        layout.label(text="ARKit names (shape key -> ARKit):")
        row = layout.row()
        row.template_list("FOMM_UL_arkit", "", s, "arkit_map", s, "arkit_index", rows=4)
        layout.operator("fomm.arkit_fill", icon="SORTALPHA")
        col = layout.column(align=True)
        col.operator("fomm.export_livelink_csv", icon="EXPORT")
        col.operator("fomm.export_fbx", icon="EXPORT")


classes = (FOMM_OT_arkit_fill, FOMM_OT_export_livelink_csv, FOMM_OT_export_fbx, FOMM_UL_arkit, FOMM_PT_export)


register, unregister = bpy.utils.register_classes_factory(classes)  # in order; reversed
