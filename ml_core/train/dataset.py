"""Training data in the authors' layout: ``DIR/train`` and ``DIR/test`` holding videos (.mp4, .avi, .mov, .mkv,
.gif, .webm) or folders of frames (.png/.jpg). Each sample is two frames of one video (source, driving).

- Frames are decoded once with OpenCV, resized to the training resolution and kept in memory as uint8
  (optionally cached as ``.npy`` under ``cache_dir``), so the training loop never decodes.
- With ``id_sampling`` an epoch visits every identity (the name's prefix before ``#``, else before ``_``) once per
  repeat and picks one of its videos at random; otherwise every video once per repeat.
- When a ``.npz`` with ``landmarks`` [T, L, 2] and ``landmark_names`` lies beside a video (the synthetic generator's
  ground truth), the landmarks named in ``landmark_names`` are returned for auxiliary keypoint supervision.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ml_core.errors import FommError
from ml_core.train.augmentation import augment_pair, flip_permutation

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".gif", ".webm", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def identity_of(name: str) -> str:
    """The identity a clip belongs to: its name's prefix before ``#`` (authors' vox layout), else before ``_``."""
    stem = Path(name).stem if Path(name).suffix.lower() in VIDEO_EXTS else Path(name).name
    if "#" in stem:
        return stem.split("#", 1)[0]
    return stem.split("_", 1)[0]


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    interp = cv2.INTER_AREA if frame.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(frame, (size, size), interpolation=interp)


def decode_video(path: Path, size: int) -> np.ndarray:
    """All frames of a video (or a folder of frames) as RGB uint8 ``[T, size, size, 3]``."""
    import cv2

    frames = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise FommError(f"unreadable frame {f}: remove it or re-export the folder")
            frames.append(_resize(img[:, :, ::-1], size))
    else:
        from ml_core.video import VideoReader  # the one place that opens videos (rotation, damaged files)

        try:
            with VideoReader(path) as reader:
                frames.extend(_resize(img, size) for _, img in reader)
        except FommError as exc:
            raise FommError(f"unreadable video {path}: {exc}") from None
    if len(frames) < 2:
        raise FommError(f"unreadable video {path}: it has {len(frames)} decodable frame(s), at least 2 are needed")
    return np.ascontiguousarray(np.stack(frames))


@dataclass
class Clip:
    path: Path
    identity: str
    frames: np.ndarray  # [T, S, S, 3] uint8
    landmarks: np.ndarray | None  # [T, L, 2] float32, in the order of the requested landmark names


def find_clips(folder: Path) -> list[Path]:
    """Videos and frame folders directly under ``folder``, sorted."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        is_video = p.is_file() and p.suffix.lower() in VIDEO_EXTS
        if is_video or (p.is_dir() and any(q.suffix.lower() in IMAGE_EXTS for q in p.iterdir())):
            out.append(p)
    return out


def _load_landmarks(path: Path, names: list[str], n_frames: int) -> np.ndarray | None:
    side = path.with_suffix(".npz") if path.is_file() else path.parent / (path.name + ".npz")
    if not names or not side.exists():
        return None
    try:
        with np.load(side, allow_pickle=False) as gt:
            if "landmarks" not in gt or "landmark_names" not in gt:
                return None
            have = [str(n) for n in gt["landmark_names"]]
            lms = np.asarray(gt["landmarks"], dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise FommError(f"ground truth {side} is not readable ({type(exc).__name__}): regenerate it") from None
    missing = [n for n in names if n not in have]
    if missing:
        raise FommError(
            f"ground truth {side} has no landmark '{missing[0]}' named in the config's "
            "train_params.landmark_supervision.keypoints"
        )
    if lms.ndim != 3 or lms.shape[0] < n_frames:
        return None
    return np.ascontiguousarray(lms[:n_frames, [have.index(n) for n in names]])


def _cached_decode(path: Path, size: int, cache_dir: Path | None) -> np.ndarray:
    if cache_dir is None:
        return decode_video(path, size)
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{size}".encode()).hexdigest()[:20]
    cached = cache_dir / f"{key}.npy"
    if cached.exists():
        try:
            return np.load(cached)
        except (OSError, ValueError):
            pass
    frames = decode_video(path, size)
    from ml_core.fileio import atomic_path

    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached) as tmp, open(tmp, "wb") as f:
        np.save(f, frames)
    return frames


def load_clips(
    root: str | os.PathLike,
    split: str,
    size: int,
    landmark_names: list[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> list[Clip]:
    """Decode every clip of ``root/split`` (``root`` itself when it has no ``split`` folder)."""
    root = Path(root)
    if not root.is_dir():
        raise FommError(f"data folder not found: {root}")
    folder = root / split if (root / split).is_dir() else root
    paths = find_clips(folder)
    if not paths:
        raise FommError(f"no videos or frame folders in {folder}: put training clips (.mp4 ...) under {root}/train")
    names = list(landmark_names or [])
    clips = []
    for i, p in enumerate(paths):
        frames = _cached_decode(p, size, Path(cache_dir) if cache_dir else None)
        clips.append(Clip(p, identity_of(p.name), frames, _load_landmarks(p, names, len(frames))))
        if progress is not None:
            progress(i + 1, len(paths))
    return clips


class PairDataset(torch.utils.data.Dataset):
    """(source, driving) pairs from :func:`load_clips` clips, with augmentation and optional landmarks."""

    def __init__(
        self,
        clips: list[Clip],
        id_sampling: bool = True,
        num_repeats: int = 1,
        augmentation_params: dict | None = None,
        landmark_names: list[str] | None = None,
        seed: int = 0,
    ):
        if not clips:
            raise FommError("no training clips")
        self.clips = clips
        self.by_identity: dict[str, list[int]] = {}
        for i, c in enumerate(clips):
            self.by_identity.setdefault(c.identity if id_sampling else f"{i}", []).append(i)
        self.keys = sorted(self.by_identity)
        self.num_repeats = max(int(num_repeats), 1)
        self.augmentation_params = augmentation_params or {}
        self.landmark_names = list(landmark_names or [])
        self.flip_perm = flip_permutation(self.landmark_names) if self.landmark_names else None
        self.rng = np.random.default_rng(seed)

    def reseed(self, *seed: int) -> None:
        self.rng = np.random.default_rng(list(seed))

    def __len__(self) -> int:
        return len(self.keys) * self.num_repeats

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        members = self.by_identity[self.keys[idx % len(self.keys)]]
        clip = self.clips[members[int(self.rng.integers(len(members)))]]
        pick = np.sort(self.rng.choice(len(clip.frames), size=2, replace=True))
        frames = clip.frames[pick].astype(np.float32) / 255.0
        n_lm = len(self.landmark_names)
        lms = clip.landmarks[pick] if clip.landmarks is not None else None
        frames, lms = augment_pair(frames, lms, self.augmentation_params, self.rng, self.flip_perm)
        valid = lms is not None
        if lms is None:
            lms = np.zeros((2, n_lm, 2), np.float32)
        t = torch.from_numpy(frames).permute(0, 3, 1, 2)
        return {
            "source": t[0],
            "driving": t[1],
            "landmarks_source": torch.from_numpy(lms[0].copy()),
            "landmarks_driving": torch.from_numpy(lms[1].copy()),
            "landmarks_valid": torch.tensor(valid),
        }
