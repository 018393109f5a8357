"""The neural preview: worker animation -> image sequence on a plane, in sync with the baked frames."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import bpy
import numpy as np
import pytest

from blender_fomm.preview import PREVIEW_PROP, build_preview_plane, preview_texture, sequence_files
from ml_core.errors import FommError
from tools.synth import make_test_character


def _png(path: Path, value: int, size: int = 8) -> None:
    """A flat grey RGB PNG written with zlib only (no OpenCV under Blender 4.5's venv)."""
    raw = b"".join(b"\x00" + bytes([value] * 3 * size) for _ in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")

    ihdr = size.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _render_plane_centre(scene, plane, frame: int, out: Path) -> float:
    """Render the plane (Workbench, flat texture colour) at ``frame``; the centre pixel's grey level."""
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.data.type = "ORTHO"
    cam.data.ortho_scale = plane.dimensions.x * 0.5
    cam.location = (plane.location.x, plane.location.y - 5, plane.location.z)
    cam.rotation_euler = (np.pi / 2, 0, 0)
    r = scene.render
    r.engine = "BLENDER_WORKBENCH"
    r.resolution_x = r.resolution_y = 8
    r.image_settings.file_format = "PNG"
    scene.display.shading.light = "FLAT"
    scene.display.shading.color_type = "TEXTURE"
    scene.view_settings.view_transform = "Standard"
    scene.frame_set(frame)
    r.filepath = str(out)
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(str(out))
    px = np.array(img.pixels[:]).reshape(8, 8, 4)
    bpy.data.images.remove(img)
    bpy.data.objects.remove(cam)
    return float(px[4, 4, :3].mean())


def test_plane_shows_the_frame_of_each_scene_frame(tmp_path):
    scene = bpy.context.scene
    frames = tmp_path / "frames"
    frames.mkdir()
    levels = [40, 90, 140, 190, 240]
    for i, v in enumerate(levels):
        _png(frames / f"preview_{i + 1:04d}.png", v)
    plane = build_preview_plane(scene, frames, start_frame=10)
    assert plane[PREVIEW_PROP]
    tex = preview_texture(plane)
    assert tex.image.source == "SEQUENCE"
    assert tex.image_user.frame_duration == 5 and tex.image_user.frame_start == 10
    links = plane.data.materials[0].node_tree.links
    assert any(link.to_node.type == "EMISSION" and link.from_node == tex for link in links)
    for f in (10, 12, 14):
        got = _render_plane_centre(scene, plane, f, tmp_path / f"r{f}.png")
        assert got == pytest.approx(levels[f - 10] / 255, abs=0.02)
    # again: the old plane, material and image are replaced, nothing else left behind
    build_preview_plane(scene, frames, start_frame=1)
    assert sum(1 for o in bpy.data.objects if o.get(PREVIEW_PROP)) == 1
    assert len([m for m in bpy.data.materials if m.get(PREVIEW_PROP)]) == 1
    assert len([i for i in bpy.data.images if i.get(PREVIEW_PROP)]) == 1


def test_sequence_files_errors(tmp_path):
    with pytest.raises(FommError, match="no numbered frames"):
        sequence_files(tmp_path)


def test_neural_preview_operator(motion_clip):
    scene = bpy.context.scene
    scene.render.fps = 25
    rig = make_test_character(0)
    s = scene.fomm
    s.target_object = rig.mesh
    s.clip_path = str(motion_clip)
    s.start_frame = 5
    assert bpy.ops.fomm.neural_preview() == {"FINISHED"}
    plane = next(o for o in bpy.data.objects if o.get(PREVIEW_PROP))
    tex = preview_texture(plane)
    files = sequence_files(Path(bpy.path.abspath(tex.image.filepath)).parent)
    assert len(files) == 16  # one frame per scene frame of the clip (25 fps -> 25 fps)
    assert tex.image_user.frame_duration == 16 and tex.image_user.frame_start == 5
    assert plane.location.x > max((rig.mesh.matrix_world @ v.co).x for v in rig.mesh.data.vertices)
    assert "16 frames" in s.last_report
    # the character's source render is kept beside the frames for inspection
    assert os.path.isfile(Path(files[0]).parent.parent / "source.png")


def test_neural_preview_bad_image(motion_clip, tmp_path):
    s = bpy.context.scene.fomm
    s.clip_path = str(motion_clip)
    s.preview_source = "IMAGE"
    bad = tmp_path / "face.png"
    bad.write_text("not an image")
    s.preview_image = str(bad)
    objects = len(bpy.data.objects)
    with pytest.raises(RuntimeError) as err:
        bpy.ops.fomm.neural_preview()
    assert "face.png" in str(err.value) and "Traceback" not in str(err.value)
    assert len(bpy.data.objects) == objects
