"""Neural preview benchmark: frames/s and peak memory of ``ml_core.animate`` against the authors' demo loop.

Speed: the vox-256-sized networks (``ml_core/configs/vox-256.yaml``, random weights, seed 0), 256x256, on the
torch threads given (2 by default). Both sides start from the same motion clip (keypoints of a generated source
with a smooth synthetic motion) and write an mp4. The baseline is the authors' ``demo.py`` ``make_animation``
loop: batch 1, relative motion per frame, the full generator forward per frame (the source re-encoded and
re-downsampled every frame, the warped ``deformed`` image computed), under ``torch.no_grad``, every prediction
kept in a list and written at the end. (The demo also runs the keypoint detector on every driving frame; that is
left out on both sides: ``animate`` takes an extracted clip.) Ours: ``animate`` (source work once, batch norms
folded, channels-last, batched, streamed writing) in fp32 and bf16. Runs are interleaved over several rounds and
the median is taken, so load from other processes hits both sides alike.

Quality: the bf16 frames' PSNR against fp32 (same clip), and fp32 against the unfused generator path.

Memory: peak RSS of a child process while it animates (its high-water mark, reset after the model is built) for two
clip lengths, ours and the official-style loop; smaller input size by default to keep it short (``--mem-size``).

    .venv/bin/python bench/bench_animate.py              # everything, prints a table
    .venv/bin/python bench/bench_animate.py --write      # ... and updates bench/RESULTS.md
    .venv/bin/python bench/bench_animate.py --skip-rss   # speed only
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import _common  # noqa: E402
from bench._common import load_average, machine, replace_section, status_mib  # noqa: E402

SECTION = "bench_animate"


# ------------------------------------------------------------------------------------------ inputs
def make_source(size: int) -> np.ndarray:
    """A drawn face on a gradient background, RGB uint8 [size, size, 3]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([60 + 80 * xx, 70 + 60 * yy, 110 + 40 * xx * yy], axis=-1).astype(np.uint8)
    c, s = size // 2, size // 3
    cv2.ellipse(img, (c, c), (int(s * 0.8), s), 0, 0, 360, (200, 165, 140), -1)
    for dx in (-1, 1):
        cv2.circle(img, (c + dx * s // 3, c - s // 5), max(2, s // 10), (40, 30, 30), -1)
    cv2.ellipse(img, (c, c + s // 2), (s // 3, max(2, s // 10)), 0, 0, 360, (120, 50, 50), -1)
    return img


def make_bundle(size: int):
    import torch

    from ml_core.model import build_model, load_config

    cfg = load_config("vox-256")
    cfg["dataset_params"] = {**cfg.get("dataset_params", {}), "frame_shape": [size, size, 3]}
    bundle = build_model(cfg, seed=0)
    torch.manual_seed(0)
    return bundle


def make_clip(bundle, source: np.ndarray, frames: int):
    """The source's own keypoints moved smoothly (sway, nod, jitter), frame 0 the reference."""
    import torch

    from ml_core.clip import MotionClip

    x = torch.from_numpy(source).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        kp = bundle.kp_detector(x)
    v0 = kp["value"][0].numpy()
    j0 = kp["jacobian"][0].numpy() if "jacobian" in kp else np.broadcast_to(np.eye(2), (*v0.shape[:1], 2, 2))
    t = np.arange(frames)[:, None, None] / 25.0
    rng = np.random.default_rng(0)
    values = (
        v0[None] + 0.06 * np.sin(2 * np.pi * 0.7 * t) * np.array([1.0, 0.3]) + rng.normal(0, 0.005, (frames, *v0.shape))
    )
    angle = 0.15 * np.sin(2 * np.pi * 0.4 * t[:, 0, 0])
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    jac = np.einsum("tij,kjl->tkil", rot, j0)
    return MotionClip(
        values=values,
        jacobians=jac,
        fps=25.0,
        frame_indices=np.arange(frames),
        reference_frame=0,
        crop_box=(0, 0, source.shape[0]),
        video_size=(source.shape[1], source.shape[0]),
        num_kp=bundle.num_kp,
        image_size=bundle.image_size,
        config_hash=bundle.config_hash,
        checkpoint_hash=bundle.checkpoint_hash,
    )


# ------------------------------------------------------------------------------------- the two loops
def official_loop(bundle, source: np.ndarray, clip, out: Path) -> int:
    """The authors' make_animation + imageio.mimsave, from a clip: batch 1, full forward, all frames kept."""
    import torch

    from ml_core.motion import relative_motion
    from ml_core.video import write_video

    with torch.no_grad():
        predictions = []
        src = torch.tensor(source[np.newaxis].astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        kp_source = bundle.kp_detector(src)
        values, jacs = torch.from_numpy(clip.values), torch.from_numpy(clip.jacobians)
        kp_initial = {"value": values[:1], "jacobian": jacs[:1]}
        for t in range(clip.num_frames):
            kp_driving = {"value": values[t : t + 1], "jacobian": jacs[t : t + 1]}
            kp_norm = relative_motion(kp_source, kp_driving, kp_initial, adapt_movement_scale=True)
            out_t = bundle.generator(src, kp_source=kp_source, kp_driving=kp_norm)
            predictions.append(np.transpose(out_t["prediction"].data.cpu().numpy(), [0, 2, 3, 1])[0])
    write_video(out, [(np.clip(p, 0, 1) * 255).round().astype(np.uint8) for p in predictions], fps=clip.fps)
    return len(predictions)


def ours(bundle, source: np.ndarray, clip, out: Path, batch: int, dtype: str) -> int:
    from ml_core.animation import animate

    return int(animate(source, clip, out, model=bundle, batch_size=batch, dtype=dtype)["frames"])


# ------------------------------------------------------------------------------------------ speed
def speed(frames: int, rounds: int, batch: int, threads: int, size: int) -> dict:
    import torch

    from ml_core.animation import iter_animation_batches
    from ml_core.motion import relative_motion

    torch.set_num_threads(threads)
    bundle = make_bundle(size)
    source = make_source(size)
    clip = make_clip(bundle, source, frames)
    warm = make_clip(bundle, source, 2)
    runs = {
        "official": lambda out, c: official_loop(bundle, source, c, out),
        "fp32_b1": lambda out, c: ours(bundle, source, c, out, 1, "fp32"),
        "fp32": lambda out, c: ours(bundle, source, c, out, batch, "fp32"),
        "bf16": lambda out, c: ours(bundle, source, c, out, batch, "bf16"),
    }
    fps: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}  # frames per CPU-second of this process (all threads)
    with tempfile.TemporaryDirectory(prefix="bench_animate_") as tmp:
        for name, fn in runs.items():  # warm-up: one-time kernel set-up (oneDNN primitives) on both sides
            fn(Path(tmp) / f"warm_{name}.mp4", warm)
        for r in range(rounds):
            for name, fn in runs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                n = fn(Path(tmp) / f"{name}_{r}.mp4", clip)
                fps[name].append(n / (time.perf_counter() - t0))
                cpu[name].append(n / (time.process_time() - c0))
                print(
                    f"  round {r + 1} {name}: {fps[name][-1]:.3f} frames/s, {cpu[name][-1]:.3f} frames/CPU-s",
                    flush=True,
                )
    med = {k: round(statistics.median(v), 3) for k, v in fps.items()}
    med_cpu = {k: round(statistics.median(v), 3) for k, v in cpu.items()}

    # quality: bf16 vs fp32, fp32 (folded, channels-last, batched) vs the plain generator path
    n = min(frames, 8)
    short = make_clip(bundle, source, n)
    fp32 = np.concatenate(list(iter_animation_batches(bundle, source, short, batch_size=batch)))
    bf16 = np.concatenate(list(iter_animation_batches(bundle, source, short, batch_size=batch, dtype="bf16")))
    with torch.inference_mode():
        src = torch.from_numpy(source).permute(2, 0, 1)[None].float() / 255.0
        kp_s = bundle.kp_detector(src)
        kp_d = {"value": torch.from_numpy(short.values), "jacobian": torch.from_numpy(short.jacobians)}
        kp_n = relative_motion(kp_s, kp_d, {k: v[:1] for k, v in kp_d.items()})
        plain = bundle.generator(
            src.expand(n, -1, -1, -1),
            kp_driving=kp_n,
            kp_source={k: v.expand(n, *v.shape[1:]) for k, v in kp_s.items()},
        )
        plain = plain["prediction"].permute(0, 2, 3, 1).numpy()
    mse = float(np.mean((fp32 - bf16) ** 2))
    return {
        "frames": frames,
        "rounds": rounds,
        "batch": batch,
        "threads": threads,
        "size": size,
        "fps": med,
        "fps_all": {k: [round(x, 3) for x in v] for k, v in fps.items()},
        "fps_cpu": med_cpu,
        "bf16_psnr_db": round(10 * np.log10(1.0 / mse), 2) if mse > 0 else float("inf"),
        "bf16_max_abs": float(np.abs(fp32 - bf16).max()),
        "fp32_vs_plain_max_abs": float(np.abs(fp32 - plain).max()),
        "frame_std": float(fp32.std()),
    }


# ------------------------------------------------------------------------------------------ memory
def rss_child(frames: int, size: int, batch: int, official: bool, out: str) -> None:
    """Build the model, animate ``frames`` frames to ``out``, print peak RSS (MiB) as JSON.

    The peak is the process's high-water mark (VmHWM) during the animation alone: it is reset after the model is
    built (``/proc/self/clear_refs`` 5), so the build's own transient peak does not hide what the animation uses.
    """
    import torch

    torch.set_num_threads(2)
    bundle = make_bundle(size)
    source = make_source(size)
    clip = make_clip(bundle, source, frames)
    Path("/proc/self/clear_refs").write_text("5")
    start = status_mib("VmRSS")
    t0 = time.perf_counter()
    n = (
        official_loop(bundle, source, clip, Path(out))
        if official
        else ours(bundle, source, clip, Path(out), batch, "fp32")
    )
    print(
        json.dumps(
            {
                "frames": n,
                "seconds": round(time.perf_counter() - t0, 1),
                "peak_mib": round(status_mib("VmHWM"), 1),
                "start_mib": round(start, 1),
                "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def run_child(frames: int, size: int, batch: int, official: bool, out: Path) -> dict:
    cmd = [__file__, "--rss-child", str(frames), "--mem-size", str(size), "--batch", str(batch), "--out", str(out)]
    return _common.run_child(cmd + ["--official"] * official)


def memory(lengths: list[int], size: int, batch: int, with_official: bool) -> dict:
    res: dict = {"size": size, "batch": batch, "lengths": lengths, "ours": {}, "official": {}}
    with tempfile.TemporaryDirectory(prefix="bench_animate_rss_") as tmp:
        for n in lengths:
            res["ours"][n] = run_child(n, size, batch, False, Path(tmp) / f"o{n}.mp4")
            print(f"  ours, {n} frames: {res['ours'][n]}", flush=True)
            if with_official:
                res["official"][n] = run_child(n, size, batch, True, Path(tmp) / f"b{n}.mp4")
                print(f"  official-style, {n} frames: {res['official'][n]}", flush=True)
    return res


# ----------------------------------------------------------------------------------------- report
def report(res: dict, cmd: str) -> str:
    lines = [f"<!-- section: {SECTION} (neural preview) -->", "## Neural preview (`bench/bench_animate.py`)", ""]
    lines.append(
        f"Command: `{cmd}`. Machine: {res['machine']}; load average {res['load_before']} before, "
        f"{res['load_after']} after (the 2 cores are shared with other engineers' jobs; ratios come from "
        "interleaved rounds)."
    )
    lines.append("")
    if "speed" in res:
        s = res["speed"]
        f = s["fps"]
        lines += [
            f"Speed: vox-256-sized networks (random weights), {s['size']}x{s['size']}, {s['threads']} torch threads, "
            f"a {s['frames']}-frame clip rendered to an mp4 (model build excluded; everything else timed, incl. "
            f"the source's keypoints/encoding and writing); median of {s['rounds']} interleaved rounds after a "
            "warm-up.",
            "",
            "| pipeline | frames/s (wall) | vs official loop | frames per CPU-second | vs official loop |",
            "|---|---|---|---|---|",
        ]
        c = s["fps_cpu"]
        for key, label in (
            (
                "official",
                "official-style loop (batch 1, source re-encoded per frame, `deformed` computed, frames "
                "kept, written at the end; fp32)",
            ),
            ("fp32_b1", "`animate`, batch 1, fp32"),
            ("fp32", f"`animate`, batch {s['batch']}, fp32"),
            ("bf16", f"`animate`, batch {s['batch']}, bf16 autocast"),
        ):
            lines.append(
                f"| {label} | {f[key]} | {f[key] / f['official']:.2f}x | {c[key]} | {c[key] / c['official']:.2f}x |"
            )
        lines += [
            "",
            f"Per round (wall frames/s): {s['fps_all']}. Frames per CPU-second (user + system time of the process, "
            "both threads) is less sensitive to other jobs taking the cores than wall time.",
            "",
            f"Quality (first {min(s['frames'], 8)} frames): bf16 against fp32 PSNR {s['bf16_psnr_db']} dB (max "
            f"abs difference {s['bf16_max_abs']:.3g} on [0, 1]); fp32 `animate` against the plain (unfolded, "
            f"NCHW, unbatched-source) generator path: max abs difference {s['fp32_vs_plain_max_abs']:.2g}. Random "
            f"weights give low-contrast frames (pixel std {s['frame_std']:.3f}), so the PSNR of a trained model "
            "may differ; the fixture model (tests) gives about 61 dB.",
            "",
        ]
    if "memory" in res:
        m = res["memory"]
        lines += [
            f"Peak RSS of a child process that builds the vox-256-sized networks and then animates (VmHWM, reset "
            f"once the model is built, so it is the animation's peak with the weights resident); input "
            f"{m['size']}x{m['size']} to keep the runs short, batch {m['batch']}, fp32, mp4 output:",
            "",
            "| pipeline | frames | RSS before | peak RSS while animating | time |",
            "|---|---|---|---|---|",
        ]
        for who, label in (("ours", "`animate`"), ("official", "official-style loop")):
            for n, r in m[who].items():
                lines.append(
                    f"| {label} | {n} | {r['start_mib']:.0f} MiB | {r['peak_mib']:.0f} MiB | {r['seconds']} s |"
                )
        a, b = (m["ours"][k]["peak_mib"] for k in (m["lengths"][0], m["lengths"][-1]))
        lines += [
            "",
            f"`animate` peak RSS {m['lengths'][-1]} / {m['lengths'][0]} frames: {b / a:.3f} ({b - a:+.0f} MiB).",
        ]
        if m["official"]:
            c, d = (m["official"][k]["peak_mib"] for k in (m["lengths"][0], m["lengths"][-1]))
            lines[-1] += (
                f" Official-style loop: {d / c:.3f} ({d - c:+.0f} MiB: every frame kept as float32, "
                f"{m['size'] * m['size'] * 3 * 4 / 2**20:.2f} MiB each, plus the uint8 copies written "
                "at the end)."
            )
        lines.append("")
    lines.append(f"<!-- end section: {SECTION} -->")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=16, help="clip length for the speed test")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=256, help="input size for the speed test")
    ap.add_argument("--mem-size", type=int, default=128, help="input size for the memory test")
    ap.add_argument("--mem-frames", default="50,200", help="clip lengths for the memory test")
    ap.add_argument("--skip-official-rss", action="store_true", help="memory test of ours only")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--write", action="store_true", help="update this benchmark's section of bench/RESULTS.md")
    ap.add_argument("--json", help="also write the raw results to this file")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--official", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.mem_size, args.batch, args.official, args.out)
        return 0
    res: dict = {"machine": machine(), "load_before": load_average()}
    if not args.skip_speed:
        print("speed:", flush=True)
        res["speed"] = speed(args.frames, args.rounds, args.batch, args.threads, args.size)
    if not args.skip_rss:
        print("memory:", flush=True)
        lengths = [int(x) for x in args.mem_frames.split(",")]
        res["memory"] = memory(lengths, args.mem_size, args.batch, not args.skip_official_rss)
    res["load_after"] = load_average()
    cmd = " ".join([".venv/bin/python", "bench/bench_animate.py", *sys.argv[1:]])
    text = report(res, cmd)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.write:
        replace_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
