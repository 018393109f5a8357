"""Benchmark: baking shape-key animation in bpy, bulk F-curve writing against a keyframe_insert loop.

    .venv/bin/python bench/bench_bake.py                 # Blender 5.0 (bpy wheel)
    .venv-bpy45/bin/python bench/bench_bake.py           # Blender 4.5 LTS

Writes 10,000 frames onto 50 shape keys with :func:`blender_fomm.shapekeys.bake_weights` (a new
slotted action, ``keyframe_points.add`` + ``foreach_set``), then, as the baseline, the usual add-on loop
(``key_block.value = w; key_block.keyframe_insert("value", frame=f)``) on a subset of frames, timed and
extrapolated linearly to the same 500,000 keys (the loop cost per key does not fall with more keys).
The loop is measured at two sizes to show its cost per key does not fall (it grows: each insert
updates the curve), so the extrapolation flatters the loop. Also times the bake with keyframe reduction
(RDP, tolerance 0.01 = 1% of a key's range) on the same data. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_fomm.shapekeys import bake_weights  # noqa: E402


def make_mesh(n_keys: int) -> bpy.types.Object:
    mesh = bpy.data.meshes.new("BenchFace")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 0, 1)], [], [(0, 1, 2)])
    obj = bpy.data.objects.new("BenchFace", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for i in range(n_keys):
        obj.shape_key_add(name=f"key_{i:02d}", from_mix=False)
    return obj


def curves(n_frames: int, n_keys: int) -> np.ndarray:
    """Smooth, face-like weights in [0, 1]: a few slow sines per key plus small noise."""
    rng = np.random.default_rng(0)
    t = np.arange(n_frames)[:, None] / 30.0
    w = 0.5 + 0.25 * np.sin(2 * np.pi * rng.uniform(0.1, 0.8, n_keys) * t + rng.uniform(0, 6, n_keys))
    w += 0.2 * np.sin(2 * np.pi * rng.uniform(1, 3, n_keys) * t) + rng.normal(0, 0.002, (n_frames, n_keys))
    return np.clip(w, 0, 1)


def time_bulk(obj, names, frames, w, tolerance: float) -> tuple[float, object]:
    t0 = time.perf_counter()
    report = bake_weights(obj, names, frames, w, tolerance=tolerance)
    return time.perf_counter() - t0, report


def time_loop(obj, names, frames, w) -> float:
    blocks = [obj.data.shape_keys.key_blocks[n] for n in names]
    t0 = time.perf_counter()
    for fi, f in enumerate(frames):
        for ki, kb in enumerate(blocks):
            kb.value = float(w[fi, ki])
            kb.keyframe_insert("value", frame=float(f))
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--keys", type=int, default=50)
    ap.add_argument("--loop-frames", type=int, default=400, help="frames for the keyframe_insert baseline")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    bpy.ops.wm.read_homefile(use_empty=True)
    names = [f"key_{i:02d}" for i in range(args.keys)]
    w = curves(args.frames, args.keys)
    frames = np.arange(1, args.frames + 1)
    n_keys = args.frames * args.keys

    bulk = []
    for _ in range(args.repeat):
        bpy.ops.wm.read_homefile(use_empty=True)
        bulk.append(time_bulk(make_mesh(args.keys), names, frames, w, 0.0)[0])
    bpy.ops.wm.read_homefile(use_empty=True)
    reduced_s, report = time_bulk(make_mesh(args.keys), names, frames, w, 0.01)

    rates = []
    for sub in (min(args.loop_frames // 2, args.frames), min(args.loop_frames, args.frames)):
        bpy.ops.wm.read_homefile(use_empty=True)
        obj = make_mesh(args.keys)
        loop_s = time_loop(obj, names, frames[:sub], w[:sub])
        rates.append((sub * args.keys, loop_s))
    loop_keys, loop_s = rates[-1]
    loop_full = loop_s * n_keys / loop_keys

    best = min(bulk)
    print(f"Blender {bpy.app.version_string}, Python {sys.version.split()[0]}")
    print(f"{args.frames} frames x {args.keys} shape keys = {n_keys:,} keys")
    print("| method | time (s) | keys/s | vs loop |")
    print("|---|---|---|---|")
    print(f"| bulk write (best of {args.repeat}) | {best:.3f} | {n_keys / best:,.0f} | {loop_full / best:.0f}x |")
    print(
        f"| bulk write + RDP (tol 0.01, {report.keys_before:,} -> {report.keys_after:,} keys) | "
        f"{reduced_s:.3f} | {n_keys / reduced_s:,.0f} | {loop_full / reduced_s:.0f}x |"
    )
    print(
        f"| keyframe_insert loop ({loop_keys:,} keys measured, extrapolated) | {loop_full:.1f} | "
        f"{loop_keys / loop_s:,.0f} | 1x |"
    )
    print("keyframe_insert loop rate: " + ", ".join(f"{k:,} keys {k / s:,.0f} keys/s" for k, s in rates))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
