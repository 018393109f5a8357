"""ml_core.animation: parity with the authors' generator output, streamed PNG/MP4/review outputs, bad inputs."""

from __future__ import annotations

import dataclasses
import warnings

import cv2
import numpy as np
import pytest
import torch

from ml_core.animation import (
    PNG_PREFIX,
    animate,
    constant_rate,
    frame_source,
    inference_generator,
    iter_animation,
    iter_animation_batches,
    output_fps,
    png_name,
)
from ml_core.clip import MotionClip, load_clip
from ml_core.errors import FommError
from ml_core.extraction import Cancelled, extract
from ml_core.model import load_model
from ml_core.motion import relative_motion
from ml_core.video import VideoReader, write_video
from tests.conftest import FIXTURE_DIR, TINY_CKPT

ATOL = 1e-5


def driving_frames(n: int, w: int = 80, h: int = 60) -> list[np.ndarray]:
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 40, np.uint8)
        cv2.circle(f, (w // 2 - 6 + 2 * i, h // 2), 14 + (i % 3), (230, 180, 120), -1)
        cv2.rectangle(f, (5, 5 + i), (20, 15 + i), (60, 200, 90), -1)
        out.append(f)
    return out


def source_image(w: int = 96, h: int = 72) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (90, 70, 160)
    cv2.circle(img, (w // 2, h // 2), h // 3, (240, 210, 170), -1)
    cv2.circle(img, (w // 2 - 8, h // 2 - 5), 4, (20, 20, 20), -1)
    return img


@pytest.fixture(scope="module")
def media(tmp_path_factory, tiny_bundle):
    d = tmp_path_factory.mktemp("animate_media")
    write_video(d / "drive.mp4", driving_frames(10), fps=25)
    clip = extract(d / "drive.mp4", model=tiny_bundle, crop="full", reference_frame=2)
    clip.save(d / "clip.npz")
    cv2.imwrite(str(d / "source.png"), cv2.cvtColor(source_image(), cv2.COLOR_RGB2BGR))
    return d


def listing(path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# ------------------------------------------------------------------------------------------------- parity
def fixture_clip(bundle, driving: torch.Tensor) -> MotionClip:
    with torch.inference_mode():
        kp = bundle.kp_detector(driving)
    n = driving.shape[0]
    return MotionClip(
        values=kp["value"].numpy(),
        jacobians=kp["jacobian"].numpy(),
        fps=25.0,
        frame_indices=np.arange(n),
        reference_frame=0,
        crop_box=(0, 0, 64),
        video_size=(64, 64),
        num_kp=bundle.num_kp,
        image_size=64,
        config_hash=bundle.config_hash,
        checkpoint_hash=bundle.checkpoint_hash,
    )


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_fp32_frames_equal_the_authors_generator_output(tiny_config, align_corners, batch_size):
    """A clip of the fixture's driving keypoints (reference frame 0), relative mode with movement-scale
    adaptation: the frames equal the reference implementation's ``prediction`` to 1e-5."""
    data = np.load(FIXTURE_DIR / "tiny-inputs.npz")
    expected = np.load(FIXTURE_DIR / f"tiny-expected-align_corners_{str(align_corners).lower()}.npz")["prediction"]
    bundle = load_model(TINY_CKPT, tiny_config, align_corners=align_corners)
    clip = fixture_clip(bundle, torch.from_numpy(data["driving"]))
    frames = np.stack(list(iter_animation(bundle, torch.from_numpy(data["source"]), clip, batch_size=batch_size)))
    assert frames.shape == (4, 64, 64, 3) and frames.dtype == np.float32
    np.testing.assert_allclose(frames, expected.transpose(0, 2, 3, 1), rtol=0, atol=ATOL)


def test_bf16_is_close_to_fp32(tiny_bundle):
    data = np.load(FIXTURE_DIR / "tiny-inputs.npz")
    clip = fixture_clip(tiny_bundle, torch.from_numpy(data["driving"]))
    src = torch.from_numpy(data["source"])
    fp32 = np.stack(list(iter_animation(tiny_bundle, src, clip)))
    bf16 = np.stack(list(iter_animation(tiny_bundle, src, clip, dtype="bf16")))
    psnr = 10 * np.log10(1.0 / np.mean((fp32 - bf16) ** 2))
    assert 30 < psnr < 200  # close, yet really a different computation


@pytest.mark.parametrize("mode,adapt", [("absolute", True), ("relative", False), ("relative", True)])
def test_modes_match_the_plain_generator_path(tiny_bundle, media, mode, adapt):
    """Each mode equals the lead's unfused generator fed the keypoints that mode defines."""
    clip = load_clip(media / "clip.npz")
    src_img = frame_source(source_image(), 64)
    src = torch.from_numpy(src_img).permute(2, 0, 1)[None].float() / 255.0
    frames = np.concatenate(
        list(iter_animation_batches(tiny_bundle, src_img, clip, mode=mode, adapt_movement_scale=adapt, batch_size=4))
    )
    with torch.inference_mode():
        kp_s = tiny_bundle.kp_detector(src)
        kp_d = {"value": torch.from_numpy(clip.values), "jacobian": torch.from_numpy(clip.jacobians)}
        if mode == "relative":
            r = clip.reference_frame
            kp_d = relative_motion(kp_s, kp_d, {k: v[r : r + 1] for k, v in kp_d.items()}, adapt_movement_scale=adapt)
        n = clip.num_frames
        ref = tiny_bundle.generator(
            src.expand(n, -1, -1, -1),
            kp_driving=kp_d,
            kp_source={k: v.expand(n, *v.shape[1:]) for k, v in kp_s.items()},
        )
    np.testing.assert_allclose(frames, ref["prediction"].permute(0, 2, 3, 1).numpy(), rtol=0, atol=ATOL)


def test_modes_differ_and_bundle_untouched(tiny_bundle, media):
    clip = load_clip(media / "clip.npz")
    before = {k: v.clone() for k, v in tiny_bundle.generator.state_dict().items()}
    rel = np.stack(list(iter_animation(tiny_bundle, source_image(), clip)))
    ab = np.stack(list(iter_animation(tiny_bundle, source_image(), clip, mode="absolute")))
    assert np.abs(rel - ab).max() > 1e-4  # the random tiny model moves little, but far above float noise
    assert np.abs(rel[0] - rel[-1]).max() > 1e-4  # the preview moves
    after = tiny_bundle.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch norms were folded in a private copy


def test_inference_copy_is_reused_until_the_weights_change(tiny_config, media):
    bundle = load_model(TINY_CKPT, tiny_config)
    first = inference_generator(bundle)
    assert inference_generator(bundle) is first
    clip = load_clip(media / "clip.npz")
    before = np.stack(list(iter_animation(bundle, source_image(), clip)))
    with torch.no_grad():
        bundle.generator.final.bias.add_(0.5)  # an in-place update, as an optimiser step would make
    second = inference_generator(bundle)
    assert second is not first
    after = np.stack(list(iter_animation(bundle, source_image(), clip)))
    assert np.abs(after - before).min() > 0.01  # the new weights are used


# ------------------------------------------------------------------------------------------------ framing
def test_source_is_framed_not_stretched():
    img = np.zeros((40, 80, 3), np.uint8)
    cv2.circle(img, (40, 20), 15, (255, 255, 255), -1)
    out = frame_source(img, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out[:14].max() == 0 and out[-14:].max() == 0  # padded above and below, like extraction
    ys, xs = np.nonzero(out[:, :, 0] > 127)
    assert abs((ys.max() - ys.min()) - (xs.max() - xs.min())) <= 1  # the circle stays a circle
    box = frame_source(img, 32, crop=(20, 0, 40))
    assert box.shape == (32, 32, 3) and box.min() == 0 and box.max() == 255


# ------------------------------------------------------------------------------------------------ outputs
def test_png_sequence_mp4_and_review_read_back(tiny_bundle, media, tmp_path):
    clip = load_clip(media / "clip.npz")
    seen = []
    info = animate(
        media / "source.png",
        media / "clip.npz",
        [tmp_path / "frames", tmp_path / "preview.mp4"],
        model=tiny_bundle,
        review=tmp_path / "review.mp4",
        batch_size=4,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert info["frames"] == 10 and info["fps"] == 25.0 and info["width"] == info["height"] == 64
    assert seen == [(0, 10), (4, 10), (8, 10), (10, 10)]
    assert listing(tmp_path) == ["frames", "preview.mp4", "review.mp4"]  # no temporaries left

    names = listing(tmp_path / "frames")
    assert names == [png_name(i) for i in range(1, 11)] and names[0] == f"{PNG_PREFIX}0001.png"
    pngs = np.stack([cv2.cvtColor(cv2.imread(str(tmp_path / "frames" / n)), cv2.COLOR_BGR2RGB) for n in names])
    floats = np.stack(list(iter_animation(tiny_bundle, frame_source(source_image(), 64), clip)))
    assert pngs.shape == (10, 64, 64, 3)
    assert np.abs(pngs.astype(int) - np.round(floats * 255).astype(int)).max() <= 1  # lossless, exact frames

    with VideoReader(tmp_path / "preview.mp4") as r:
        video = r.read_all()
        assert r.frames_decoded == 10 and r.size == (64, 64) and r.fps == pytest.approx(25.0)
    assert np.abs(np.stack(video).astype(float) - pngs).mean() < 8  # lossy codec, same pictures

    with VideoReader(tmp_path / "review.mp4") as r:
        review = r.read_all()
        assert r.frames_decoded == 10 and r.size == (128, 64) and r.fps == pytest.approx(25.0)
    # left: the driving video's crop (not the grey stand-in), right: the preview
    drive = VideoReader(media / "drive.mp4").read_all()
    left = np.stack([f[:, :64] for f in review]).astype(float)
    assert np.abs(left - np.stack([frame_source(f, 64) for f in drive])).mean() < 12
    assert np.abs(np.stack([f[:, 64:] for f in review]).astype(float) - pngs).mean() < 8


def test_driving_video_is_extracted_first_and_rate_follows_step(tiny_bundle, media, tmp_path):
    info = animate(
        source_image(),
        media / "drive.mp4",
        tmp_path / "a.mp4",
        model=tiny_bundle,
        extract_options={"crop": "full", "step": 2},
    )
    assert info["frames"] == 5 and info["fps"] == pytest.approx(12.5)
    with VideoReader(tmp_path / "a.mp4") as r:
        r.read_all()
        assert r.frames_decoded == 5 and r.fps == pytest.approx(12.5)
    clip = load_clip(media / "clip.npz")
    assert output_fps(clip) == 25.0


def test_earlier_preview_folder_is_replaced(tiny_bundle, media, tmp_path):
    out = tmp_path / "seq"
    out.mkdir()
    for i in range(1, 15):
        (out / png_name(i)).write_bytes(b"old")
    animate(source_image(), media / "clip.npz", out, model=tiny_bundle)
    assert listing(out) == [png_name(i) for i in range(1, 11)]
    assert all(cv2.imread(str(p)) is not None for p in out.iterdir())


def test_hash_mismatch_warns_and_strict_refuses(tiny_bundle, media, tmp_path):
    clip = load_clip(media / "clip.npz")
    clip.checkpoint_hash = "0123456789abcdef"
    lines: list[str] = []
    animate(source_image(), clip, tmp_path / "w.mp4", model=tiny_bundle, log=lines.append)
    assert len(lines) == 1 and "another checkpoint" in lines[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        animate(source_image(), clip, tmp_path / "w2.mp4", model=tiny_bundle)
    assert any("another checkpoint" in str(w.message) for w in caught)
    clip.config_hash = "fedcba9876543210"
    with pytest.raises(FommError, match="another model configuration"):
        animate(source_image(), clip, tmp_path / "s.mp4", model=tiny_bundle, strict=True)
    assert listing(tmp_path) == ["w.mp4", "w2.mp4"]


# --------------------------------------------------------------------------------------------- bad inputs
def bad_clip(media, tmp_path, kind: str):
    clip = load_clip(media / "clip.npz")
    if kind == "keypoints":
        k = 3
        return MotionClip(
            values=clip.values[:, :k],
            jacobians=clip.jacobians[:, :k],
            fps=clip.fps,
            frame_indices=clip.frame_indices,
            reference_frame=0,
            crop_box=clip.crop_box,
            video_size=clip.video_size,
            num_kp=k,
            image_size=64,
            config_hash="x",
            checkpoint_hash="y",
        )
    path = tmp_path / "inputs" / "bad.npz"
    path.parent.mkdir(exist_ok=True)
    if kind == "empty":
        data = dict(np.load(media / "clip.npz"))
        data["values"] = data["values"][:0]
        data["jacobians"] = data["jacobians"][:0]
        data["frame_indices"] = data["frame_indices"][:0]
        np.savez(path, **data)
    else:
        path.write_bytes(b"")
    return path


BAD = {
    "unreadable image": ("text.png", "clip", "out.mp4", "as an image"),
    "missing image": ("nope.png", "clip", "out.mp4", "image not found"),
    "keypoint count": ("source", "keypoints", "out.mp4", "3 keypoints but the model has 5"),
    "empty clip": ("source", "empty", "frames", "values must be [T,K,2] with T, K >= 1"),
    "zero-byte clip": ("source", "zero", "out.mp4", "empty (0 bytes)"),
    "missing clip": ("source", "nope.npz", "out.mp4", "not found"),
    "bad output suffix": ("source", "clip", "out.txt", "give a folder (PNG frames)"),
    "folder with other files": ("source", "clip", "busy", "already holds other files"),
    "output under a file": ("source", "clip", "text.png/out.mp4", "is a file, not a folder"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_one_line_error_and_nothing_written(case, tiny_bundle, media, tmp_path):
    src, drv, out, msg = BAD[case]
    (tmp_path / "text.png").write_text("not a picture\n")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    source = media / "source.png" if src == "source" else tmp_path / src
    driving = {"clip": media / "clip.npz", "nope.npz": tmp_path / "nope.npz"}.get(drv)
    if driving is None:
        driving = bad_clip(media, tmp_path, drv)
    before = listing(tmp_path)
    with pytest.raises(FommError) as err:
        animate(source, driving, tmp_path / out, model=tiny_bundle, review=tmp_path / "review.mp4")
    text = str(err.value)
    assert msg in text and "\n" not in text
    assert listing(tmp_path) == before and listing(tmp_path / "busy") == ["notes.txt"]


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"mode": "sideways"}, "mode must be one of"),
        ({"dtype": "fp8"}, "dtype must be one of"),
        ({"batch_size": 0}, "batch size"),
        ({"fps": -3}, "fps must be"),
        ({"output": None}, "nothing to write"),
    ],
)
def test_bad_options(tiny_bundle, media, tmp_path, kwargs, msg):
    kwargs = {"output": tmp_path / "o.mp4", **kwargs}
    with pytest.raises(FommError, match=msg):
        animate(media / "source.png", media / "clip.npz", model=tiny_bundle, **kwargs)
    assert listing(tmp_path) == []


def test_bf16_refused_where_the_device_cannot_run_it(tiny_bundle, media, tmp_path):
    """`animate --bf16` checks the device like `extract --bf16` ('meta' stands for a device without bf16 autocast)."""
    on_meta = dataclasses.replace(tiny_bundle, device=torch.device("meta"))
    with pytest.raises(FommError, match="bfloat16 autocast is not available on meta: run without --bf16"):
        animate(media / "source.png", media / "clip.npz", model=on_meta, output=tmp_path / "o.mp4", dtype="bf16")
    assert listing(tmp_path) == []


def test_cancel_leaves_nothing(tiny_bundle, media, tmp_path):
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 1  # after the first batch has been written

    with pytest.raises(Cancelled):
        animate(
            media / "source.png",
            media / "clip.npz",
            [tmp_path / "seq", tmp_path / "o.mp4"],
            model=tiny_bundle,
            batch_size=2,
            review=tmp_path / "r.mp4",
            cancel=cancel,
        )
    assert len(calls) == 2 and listing(tmp_path) == []


def test_variable_frame_rate_preview_keeps_each_samples_time(tiny_bundle, tmp_path):
    """Issue 16, item 7: a VFR clip is rendered at its mean rate with each sample where its time puts it (it
    used to be one output frame per sample, so a pause of 4 s played in one frame)."""
    from tests.ml_core.avmedia import write_av_video

    times = [0.0, 0.1, 0.2, 0.3, 2.3, 2.4, 2.5, 2.6]  # a 2 s freeze in the middle
    path = write_av_video(tmp_path / "vfr.mp4", driving_frames(8), times=times)
    clip = extract(path, model=tiny_bundle, crop="full")
    rate = 7 / 2.6
    even, shown = constant_rate(clip)
    assert shown.tolist() == [0, 3, 3, 3, 3, 3, 3, 7]  # the frozen frame stays on screen in the review
    assert np.allclose(even.times, np.arange(8) / rate)
    a = (1 / rate - 0.3) / 2.0  # output frame 1 lies in the freeze, between samples 3 and 4
    assert np.allclose(even.values[1], clip.values[3] * (1 - a) + clip.values[4] * a, atol=1e-6)
    steady = extract(write_av_video(tmp_path / "cfr.mp4", driving_frames(4)), model=tiny_bundle, crop="full")
    assert constant_rate(steady) == (steady, None)  # an even rate is left as it is
    info = animate(source_image(), clip, tmp_path / "a.mp4", model=tiny_bundle, review=tmp_path / "r.mp4")
    assert info["fps"] == pytest.approx(rate) and info["frames"] == int(2.6 * rate + 1e-6) + 1
    with VideoReader(tmp_path / "r.mp4") as r:
        assert len(r.read_all()) == info["frames"]
