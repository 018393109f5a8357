"""Operators: thin wrappers that gather inputs, run one :class:`.pipeline.Step`, and report.

From the UI (``INVOKE_DEFAULT``) a step with a worker job runs modally: a timer polls the worker on the
main thread, the panels draw its progress (``window_manager.fomm_job``) and the status bar shows it; ESC
or the Cancel button stops the worker. Called with ``EXEC_DEFAULT`` (scripts, tests, background mode)
the same step runs to completion synchronously. Either way the scene changes only in ``finish``, once
the job succeeded, inside one undo step.
"""

from __future__ import annotations

import os

import bpy

from ml_core.errors import FommError

from . import examples, pipeline, shapekeys
from .prefs import worker_settings
from .worker_client import CANCELLED, DONE, RUNNING, WorkerJob, run_job

_ACTIVE: dict[str, WorkerJob] = {}  # the running modal job (one at a time)


def job_running() -> bool:
    return any(w.state == RUNNING for w in _ACTIVE.values())


def _redraw(context) -> None:
    wm = context.window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PROPERTIES"}:
                area.tag_redraw()


def _status(context, text: str | None) -> None:
    ws = getattr(context, "workspace", None)
    if ws is not None:
        ws.status_text_set(text)


class _StepOperator:
    """Mixin: subclasses define ``make_step(context) -> pipeline.Step``."""

    bl_options = {"REGISTER", "UNDO"}

    def make_step(self, context) -> pipeline.Step:
        raise NotImplementedError

    # -- synchronous -------------------------------------------------------------------------------
    def execute(self, context):
        try:
            step = self.make_step(context)
            result = None
            if step.job is not None:
                ws = worker_settings(context)
                result = run_job(step.job, python=ws.python)
            line = step.finish(result)
        except FommError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except KeyboardInterrupt:
            self.report({"WARNING"}, "cancelled: nothing was changed")
            return {"CANCELLED"}
        self._done(context, line)
        return {"FINISHED"}

    def _done(self, context, line: str) -> None:
        context.scene.fomm.last_report = line
        self.report({"INFO"}, line)

    # -- modal ---------------------------------------------------------------------------------------
    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        if job_running():
            self.report({"ERROR"}, "another FOMM job is running: wait for it or cancel it")
            return {"CANCELLED"}
        try:
            step = self.make_step(context)
            if step.job is None:
                self._done(context, step.finish(None))
                return {"FINISHED"}
            ws = worker_settings(context)
            worker = WorkerJob(step.job, python=ws.python).start()
        except FommError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._step = step
        self._worker = worker
        _ACTIVE[self.bl_idname] = worker
        job = context.window_manager.fomm_job
        job.running, job.kind, job.progress, job.message = True, self.bl_idname, 0.0, step.title
        job.cancel_requested = False
        self._timer = context.window_manager.event_timer_add(0.1, window=context.window)
        context.window_manager.modal_handler_add(self)
        context.window_manager.progress_begin(0, 100)
        _status(context, f"{step.title}... (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def _cleanup(self, context) -> None:
        wm = context.window_manager
        if getattr(self, "_timer", None) is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        _status(context, None)
        job = wm.fomm_job
        job.running, job.cancel_requested, job.progress = False, False, 0.0
        _ACTIVE.pop(self.bl_idname, None)
        self._worker.close()
        _redraw(context)

    def modal(self, context, event):
        worker = self._worker
        job = context.window_manager.fomm_job
        if (event.type == "ESC" and event.value == "PRESS") or job.cancel_requested:
            worker.cancel()
            worker.wait(timeout=10)
            self._cleanup(context)
            self.report({"WARNING"}, "cancelled: nothing was changed")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        worker.poll()
        if worker.state == RUNNING:
            job.progress = worker.fraction
            total = f"{worker.done}/{worker.total}" if worker.total else (str(worker.done) if worker.done else "")
            job.message = f"{worker.message} {total}".strip()
            context.window_manager.progress_update(int(100 * worker.fraction))
            _status(context, f"{self._step.title}: {job.message} (Esc to cancel)")
            _redraw(context)
            return {"PASS_THROUGH"}
        self._cleanup(context)
        if worker.state == DONE:
            try:
                line = self._step.finish(worker.result)
            except FommError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            self._done(context, line)
            return {"FINISHED"}
        if worker.state == CANCELLED:
            self.report({"WARNING"}, "cancelled: nothing was changed")
        else:
            self.report({"ERROR"}, worker.error or "the worker failed")
        return {"CANCELLED"}


def _why_not(cls, text: str) -> bool:
    cls.poll_message_set(text)
    return False


def target_has_keys(cls: type, context: bpy.types.Context) -> bool:
    """Poll: the target mesh has shape keys to bake (else the reason shown on the greyed-out button)."""
    obj = context.scene.fomm.target_object
    return True if shapekeys.bakeable_keys(obj) else _why_not(cls, "Pick a target mesh with shape keys")


def _clip_ok(cls, context) -> bool:
    path = context.scene.fomm.clip_path
    if not path:
        return _why_not(cls, "Extract a motion clip first, or pick a clip file")
    if not os.path.isfile(bpy.path.abspath(path)):
        return _why_not(cls, "The motion clip file does not exist")
    return True


def _idle(cls) -> bool:
    return True if not job_running() else _why_not(cls, "A FOMM job is running")


class FOMM_OT_extract_motion(_StepOperator, bpy.types.Operator):
    """Extract keypoint motion from the driving video (in a background worker)"""

    bl_idname = "fomm.extract_motion"
    bl_label = "Extract Motion"

    @classmethod
    def poll(cls, context):
        s = context.scene.fomm
        if not s.video_path:
            return _why_not(cls, "Pick a driving video in the Source panel")
        return _idle(cls)

    def make_step(self, context):
        return pipeline.extract_step(context.scene, worker_settings(context))


class FOMM_OT_calibrate(_StepOperator, bpy.types.Operator):
    """Render the face with each selected shape key and measure how each moves the keypoints"""

    bl_idname = "fomm.calibrate"
    bl_label = "Calibrate"

    @classmethod
    def poll(cls, context):
        obj = context.scene.fomm.target_object
        if not shapekeys.bakeable_keys(obj):
            return _why_not(cls, "Pick a target mesh with shape keys")
        return _idle(cls)

    def make_step(self, context):
        return pipeline.calibrate_step(context.scene, worker_settings(context))


class FOMM_OT_bake_shape_keys(_StepOperator, bpy.types.Operator):
    """Bake the motion clip onto the target's shape keys (calibrating first if needed)"""

    bl_idname = "fomm.bake_shape_keys"
    bl_label = "Bake Shape Keys"

    @classmethod
    def poll(cls, context):
        obj = context.scene.fomm.target_object
        if not shapekeys.bakeable_keys(obj):
            return _why_not(cls, "Pick a target mesh with shape keys")
        return _clip_ok(cls, context) and _idle(cls)

    def make_step(self, context):
        return pipeline.bake_shape_keys_step(context.scene, worker_settings(context))


class FOMM_OT_bake_bones(_StepOperator, bpy.types.Operator):
    """Bake the motion clip onto bones: a control rig, or an existing armature's head bone"""

    bl_idname = "fomm.bake_bones"
    bl_label = "Bake Bones"

    @classmethod
    def poll(cls, context):
        s = context.scene.fomm
        if s.bone_mode == "HEAD" and (s.armature_object is None or not s.head_bone):
            return _why_not(cls, "Pick an armature and its head bone in the Target panel")
        return _clip_ok(cls, context) and _idle(cls)

    def make_step(self, context):
        return pipeline.bake_bones_step(context.scene)


class FOMM_OT_neural_preview(_StepOperator, bpy.types.Operator):
    """Animate the character's neutral face (or an image) with the clip and show it on a plane"""

    bl_idname = "fomm.neural_preview"
    bl_label = "Neural Preview"

    @classmethod
    def poll(cls, context):
        s = context.scene.fomm
        if s.preview_source == "RENDER" and s.target_object is None:
            return _why_not(cls, "Pick a target mesh to render, or use an image as the source")
        if s.preview_source == "IMAGE" and not s.preview_image:
            return _why_not(cls, "Pick a source image")
        return _clip_ok(cls, context) and _idle(cls)

    def make_step(self, context):
        return pipeline.neural_preview_step(context.scene, worker_settings(context))


class FOMM_OT_bake_from_examples(_StepOperator, bpy.types.Operator):
    """Learn from the frames you keyed on the target (shape keys, bones, custom properties) and bake every frame"""

    bl_idname = "fomm.bake_from_examples"
    bl_label = "Bake from Examples"

    @classmethod
    def poll(cls, context):
        s = context.scene.fomm
        if s.target_object is None and s.armature_object is None:
            return _why_not(cls, "Pick the target mesh or armature you posed")
        return _clip_ok(cls, context) and _idle(cls)

    def make_step(self, context):
        return examples.bake_step(context.scene)


class FOMM_OT_edit_examples(_StepOperator, bpy.types.Operator):
    """Make the example poses the active action again, to add or move examples (the bake is removed)"""

    bl_idname = "fomm.edit_examples"
    bl_label = "Edit Examples"

    def make_step(self, context):
        return examples.edit_step(context.scene)


class FOMM_OT_show_reference(_StepOperator, bpy.types.Operator):
    """Show the driving video on a plane beside the character, in step with the timeline, to pose against"""

    bl_idname = "fomm.show_reference"
    bl_label = "Show Reference Video"

    @classmethod
    def poll(cls, context):
        return _clip_ok(cls, context) and _idle(cls)

    def make_step(self, context):
        return examples.reference_step(context.scene)


class FOMM_OT_check_worker(_StepOperator, bpy.types.Operator):
    """Start the worker once and report its Python, torch and devices"""

    bl_idname = "fomm.check_worker"
    bl_label = "Check Worker"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return _idle(cls)

    def make_step(self, context):
        return pipeline.check_worker_step()

    def _done(self, context, line):
        self.report({"INFO"}, line)


class FOMM_OT_cancel(bpy.types.Operator):
    """Stop the running FOMM job (nothing is changed)"""

    bl_idname = "fomm.cancel"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        return True if job_running() else _why_not(cls, "No FOMM job is running")

    def execute(self, context):
        context.window_manager.fomm_job.cancel_requested = True
        return {"FINISHED"}


class FOMM_OT_refresh_keys(bpy.types.Operator):
    """List the target's shape keys to choose which to bake"""

    bl_idname = "fomm.refresh_keys"
    bl_label = "Refresh Shape Keys"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return target_has_keys(cls, context)

    def execute(self, context):
        s = context.scene.fomm
        pipeline.sync_key_list(s, s.target_object)
        return {"FINISHED"}


class FOMM_OT_select_keys(bpy.types.Operator):
    """Tick or untick every shape key"""

    bl_idname = "fomm.select_keys"
    bl_label = "Select Shape Keys"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    use: bpy.props.BoolProperty(default=True)

    def execute(self, context):
        for item in context.scene.fomm.keys:
            item.use = self.use
        return {"FINISHED"}


class FOMM_OT_mapping_add(bpy.types.Operator):
    """Add a manual mapping (keypoint + axis -> shape key)"""

    bl_idname = "fomm.mapping_add"
    bl_label = "Add Mapping"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        s = context.scene.fomm
        item = s.mappings.add()
        keys = shapekeys.bakeable_keys(s.target_object)
        if keys:
            item.shape_key = keys[min(len(s.mappings) - 1, len(keys) - 1)]
        s.mappings_index = len(s.mappings) - 1
        return {"FINISHED"}


class FOMM_OT_mapping_remove(bpy.types.Operator):
    """Remove the selected manual mapping"""

    bl_idname = "fomm.mapping_remove"
    bl_label = "Remove Mapping"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return True if len(context.scene.fomm.mappings) else _why_not(cls, "No mapping to remove")

    def execute(self, context):
        s = context.scene.fomm
        s.mappings.remove(s.mappings_index)
        s.mappings_index = max(0, min(s.mappings_index, len(s.mappings) - 1))
        return {"FINISHED"}


classes = (
    FOMM_OT_extract_motion,
    FOMM_OT_calibrate,
    FOMM_OT_bake_shape_keys,
    FOMM_OT_bake_bones,
    FOMM_OT_neural_preview,
    FOMM_OT_bake_from_examples,
    FOMM_OT_edit_examples,
    FOMM_OT_show_reference,
    FOMM_OT_check_worker,
    FOMM_OT_cancel,
    FOMM_OT_refresh_keys,
    FOMM_OT_select_keys,
    FOMM_OT_mapping_add,
    FOMM_OT_mapping_remove,
)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for job in list(_ACTIVE.values()):
        job.cancel()
        job.close()
    _ACTIVE.clear()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
