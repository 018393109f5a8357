"""Independent reference landmarks for the real-footage evaluation: MediaPipe FaceMesh, in its own environment.

    .venv-bench/bin/python bench/facemesh_reference.py VIDEO -o OUT.npz          # every frame of a video
    .venv-bench/bin/python bench/facemesh_reference.py IMG1 IMG2 ... -o OUT.npz   # still photographs

Runs under ``.venv-bench`` (``make bench-env``: MediaPipe 0.10.21, the last wheel that ships the face-mesh model,
numpy < 2), never under the product's environment; ``bench/eval_real_footage.py`` (product side, ``.venv``) starts it
and reads the file. Output ``.npz``: ``landmarks`` float32 [N, 468, 3] (x, y in pixels of the input frame, z in
FaceMesh's relative units; NaN where no face was found), ``found`` bool [N], ``width``, ``height``, ``fps`` (0 for
images), ``face_oval`` int [36, 2] (FaceMesh's face-oval edges, landmark indices), ``names`` (the inputs). The file
is written whole or not at all. Bad input: one ``error:`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _frames(paths: list[Path]):
    """(name, RGB frame) pairs, and the video's fps (0 for images)."""
    import cv2

    if len(paths) == 1 and paths[0].suffix.lower() not in IMAGE_EXT:
        cap = cv2.VideoCapture(str(paths[0]))
        if not cap.isOpened():
            raise ValueError(f"cannot read {paths[0]} as a video")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

        def gen():
            i = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield f"{paths[0].name}#{i}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                i += 1
            cap.release()

        return gen(), fps, False

    def gen_images():
        for p in paths:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"cannot read {p} as an image")
            yield p.name, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    return gen_images(), 0.0, True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", type=Path, help="one video, or one or more images")
    ap.add_argument("-o", "--out", type=Path, required=True, help="output .npz")
    ap.add_argument("--min-confidence", type=float, default=0.5)
    args = ap.parse_args(argv)
    for p in args.inputs:
        if not p.is_file():
            return _fail(f"{p} is not a file")
    try:
        import mediapipe as mp
        import numpy as np
        from mediapipe.python.solutions import face_mesh_connections
    except ImportError as exc:
        return _fail(f"MediaPipe is missing ({exc}); run this under .venv-bench (make bench-env)")

    try:
        frames, fps, still = _frames(args.inputs)
        marks, found, names = [], [], []
        width = height = 0
        with mp.solutions.face_mesh.FaceMesh(
            static_image_mode=still,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=args.min_confidence,
            min_tracking_confidence=args.min_confidence,
        ) as mesh:
            for name, rgb in frames:
                h, w = rgb.shape[:2]
                width, height = max(width, w), max(height, h)
                res = mesh.process(rgb)
                pts = np.full((468, 3), np.nan, np.float32)
                if res.multi_face_landmarks:
                    lm = res.multi_face_landmarks[0].landmark
                    pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lm[:468]], np.float32)
                marks.append(pts)
                found.append(bool(res.multi_face_landmarks))
                names.append(name)
    except ValueError as exc:
        return _fail(str(exc))
    if not marks:
        return _fail(f"no frames in {args.inputs[0]}")
    oval = np.array(sorted(face_mesh_connections.FACEMESH_FACE_OVAL), np.int32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part.npz")
    try:
        np.savez_compressed(
            tmp,
            landmarks=np.stack(marks),
            found=np.array(found),
            width=width,
            height=height,
            fps=fps,
            face_oval=oval,
            names=np.array(names),
        )
        os.replace(tmp, args.out)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"{args.out}: {len(marks)} frames, face found in {sum(found)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
