"""The procedural head as pure numpy geometry (no Blender): vertices for any expression, faces, materials.

Everything facial is a layer on the skull surface. Each part is a grid whose vertices are given in the
skull's (longitude, latitude, offset-along-the-normal) parameters; longitude 0 looks down -Y (towards
the camera), +X is the character's left. Feature layouts use "face units" (``u`` right, ``v`` up,
about 1 = the head's half width), converted by ``lon = u / rx``, ``lat = v / rz``. Because layers keep
their offset above the skin whatever the expression, a lid never sinks behind an eyeball and lips never
sink behind the skin; a smooth 3-D jaw field then drops the chin for everyone alike.

:func:`head_geometry` returns the vertices for an expression dict (semantic id -> weight; the basis
is the empty dict). Shape keys are ``head_geometry(params, {id: 1.0})``; topology never changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .performance import CURVE_IDS

HAIR_STYLES = ("short", "bob", "cap", "bald")

#: Named mesh points saved as 2-D landmarks, in this order.
LANDMARK_NAMES: tuple[str, ...] = (
    "chin",
    "jaw_L",
    "jaw_R",
    "mouth_corner_L",
    "mouth_corner_R",
    "lip_upper_outer",
    "lip_upper_inner",
    "lip_lower_inner",
    "lip_lower_outer",
    "lid_upper_L",
    "lid_upper_R",
    "lid_lower_L",
    "lid_lower_R",
    "eye_outer_L",
    "eye_inner_L",
    "eye_outer_R",
    "eye_inner_R",
    "pupil_L",
    "pupil_R",
    "brow_L",
    "brow_R",
    "nose_tip",
)


def _srgb_to_linear(c) -> tuple[float, float, float]:
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return tuple(float(x) for x in lin)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass
class HeadParams:
    """Everything that makes one identity; drawn by :func:`draw_head_params`."""

    seed: int
    rx: float = 0.85
    ry: float = 0.95
    rz: float = 1.08
    taper: float = 0.22
    chin: float = 0.05
    crown: float = 0.05
    eye_u: float = 0.31
    eye_v: float = 0.10
    eye_w: float = 0.13
    eye_h: float = 0.08
    eye_tilt: float = 0.0
    iris_frac: float = 0.85
    lid_open: float = 0.82
    brow_gap: float = 0.09
    brow_len: float = 0.13
    brow_thick: float = 0.032
    brow_arch: float = 0.02
    brow_tilt: float = 0.0
    nose_v: float = -0.16
    nose_h: float = 0.15
    nose_w: float = 0.08
    mouth_v: float = -0.38
    mouth_w: float = 0.19
    lip_upper: float = 0.032
    lip_lower: float = 0.042
    hair: str = "short"
    hairline: float = 0.5
    hair_thick: float = 0.07
    hair_wave: float = 0.0  # amplitude of a wavy / spiky front hairline (lat radians)
    hair_freq: float = 6.0
    hair_phase: float = 0.0
    hair_slant: float = 0.0  # side-swept fringe: hairline lower on one side
    ears: bool = True
    colors: dict = field(default_factory=dict)  # material name -> linear RGB


_SKIN_RAMP = np.array(
    [
        [0.98, 0.84, 0.74],
        [0.93, 0.74, 0.60],
        [0.80, 0.58, 0.42],
        [0.62, 0.42, 0.28],
        [0.45, 0.29, 0.19],
        [0.32, 0.20, 0.13],
    ]
)
_FANTASY_SKIN = np.array([[0.55, 0.75, 0.90], [0.60, 0.82, 0.55], [0.80, 0.62, 0.85], [0.70, 0.70, 0.72]])
_IRIS = np.array(
    [
        [0.40, 0.24, 0.12],
        [0.22, 0.13, 0.07],
        [0.20, 0.42, 0.75],
        [0.25, 0.52, 0.30],
        [0.42, 0.48, 0.55],
        [0.55, 0.44, 0.18],
        [0.10, 0.25, 0.50],
    ]
)
_HAIR = np.array(
    [
        [0.06, 0.05, 0.05],
        [0.22, 0.13, 0.07],
        [0.42, 0.26, 0.12],
        [0.85, 0.70, 0.40],
        [0.62, 0.24, 0.10],
        [0.72, 0.72, 0.74],
        [0.20, 0.30, 0.80],
        [0.85, 0.35, 0.60],
    ]
)


def draw_head_params(seed: int) -> HeadParams:
    """Draw one identity (shape, proportions, colours, hair) from ``seed``."""
    rng = np.random.default_rng([int(seed), 0x4EAD])
    u = rng.uniform
    p = HeadParams(seed=int(seed))
    p.rx, p.ry, p.rz = u(0.76, 0.92), u(0.86, 1.0), u(1.0, 1.15)
    p.taper, p.chin, p.crown = u(0.08, 0.35), u(0.0, 0.12), u(-0.03, 0.12)
    p.eye_u, p.eye_v = u(0.28, 0.35), u(0.04, 0.14)
    p.eye_w, p.eye_h = u(0.125, 0.165), u(0.075, 0.11)
    p.eye_tilt, p.iris_frac, p.lid_open = u(-0.02, 0.025), u(0.72, 0.9), u(0.7, 0.92)
    p.brow_gap, p.brow_len, p.brow_thick = u(0.06, 0.1), u(0.12, 0.16), u(0.034, 0.05)
    p.brow_arch, p.brow_tilt = u(0.0, 0.035), u(-0.03, 0.03)
    p.nose_v, p.nose_h, p.nose_w = u(-0.21, -0.12), u(0.10, 0.2), u(0.06, 0.1)
    p.mouth_v, p.mouth_w = u(-0.46, -0.37), u(0.17, 0.25)
    p.mouth_v = min(p.mouth_v, p.nose_v - 0.17)
    p.lip_upper, p.lip_lower = u(0.035, 0.05), u(0.045, 0.065)
    p.hair = str(rng.choice(HAIR_STYLES, p=[0.45, 0.25, 0.18, 0.12]))
    p.hairline, p.hair_thick = u(0.42, 0.58), u(0.04, 0.12)
    if p.hair in ("short", "bob") and rng.random() < 0.35:  # a fringe
        p.hairline = u(0.36, 0.42)
    p.hair_wave = u(0.0, 0.06) if rng.random() < 0.6 else 0.0
    p.hair_freq, p.hair_phase, p.hair_slant = u(4.0, 11.0), u(0, 2 * np.pi), u(-0.1, 0.1)
    p.ears = bool(rng.random() < 0.85)
    if rng.random() < 0.1:
        skin = _FANTASY_SKIN[rng.integers(len(_FANTASY_SKIN))]
    else:
        x = u(0, len(_SKIN_RAMP) - 1)
        i = min(int(x), len(_SKIN_RAMP) - 2)
        skin = _SKIN_RAMP[i] + (x - i) * (_SKIN_RAMP[i + 1] - _SKIN_RAMP[i])
    skin = np.clip(skin * u(0.95, 1.05, 3), 0, 1)
    hair = np.clip(_HAIR[rng.integers(len(_HAIR))] * u(0.85, 1.15, 3), 0, 1)
    iris = np.clip(_IRIS[rng.integers(len(_IRIS))] * u(0.85, 1.15, 3), 0, 1)
    # lips keep a reddish contrast against any skin tone
    lip = np.clip((0.5 * skin * np.array([0.85, 0.5, 0.5]) + 0.5 * np.array([0.7, 0.28, 0.3])) * u(0.85, 1.1), 0, 1)
    brow = np.minimum(hair * 0.55, 0.22) if rng.random() < 0.85 else np.array([0.08, 0.06, 0.05])
    brow = np.minimum(brow, skin * 0.4)  # always darker than the skin
    cap = np.clip(np.array([u(0.05, 1), u(0.05, 1), u(0.05, 1)]), 0, 1)
    srgb = {
        "skin": skin,
        "neck": skin * 0.78,
        "nose": skin * 0.94,
        "ear": skin * 0.9,
        "lip": lip,
        "mouth": [0.28, 0.05, 0.07],
        "teeth": [0.95, 0.93, 0.86],
        "eye_white": [0.96, 0.96, 0.93],
        "iris": iris,
        "pupil": [0.02, 0.02, 0.02],
        "highlight": [1.0, 1.0, 1.0],
        "lash": [0.05, 0.04, 0.04],
        "brow": brow,
        "hair": cap if p.hair == "cap" else hair,
    }
    p.colors = {k: _srgb_to_linear(v) for k, v in srgb.items()}
    return p


# ----------------------------------------------------------------------------------------- surface


def _surface(p: HeadParams, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Skull surface point for (lon, lat), head centre at the origin."""
    cl = np.cos(lat)
    dx, dy, dz = np.sin(lon) * cl, -np.cos(lon) * cl, np.sin(lat)
    below = np.clip(-dz, 0.0, 1.0) ** 1.5
    x = p.rx * dx * (1.0 - p.taper * below)
    y = p.ry * dy * (1.0 - 0.35 * p.taper * below)
    z = p.rz * dz * (1.0 + p.crown * np.clip(dz, 0.0, 1.0) ** 2)
    front = np.exp(-((lon / 0.4) ** 2)) * np.exp(-(((lat + 0.95) / 0.25) ** 2))
    y = y - p.chin * front
    return np.stack([x, y, z], axis=-1)


def _surface_with_normal(p: HeadParams, lon, lat):
    lat = np.clip(lat, -np.pi / 2 + 0.03, np.pi / 2 - 0.03)
    e = 1e-4
    pos = _surface(p, lon, lat)
    dlon = _surface(p, lon + e, lat) - _surface(p, lon - e, lat)
    dlat = _surface(p, lon, lat + e) - _surface(p, lon, lat - e)
    n = np.cross(dlon, dlat)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return pos, n


# ----------------------------------------------------------------------------------------- parts


@dataclass
class _Part:
    name: str
    ns: int
    nt: int
    fn: Callable  # (S, T, pose) -> (lon, lat, off) or xyz [.., 3] when xyz=True
    material: str | Callable[[int, int], str]
    wrap: bool = False
    xyz: bool = False
    jaw: bool = True  # the 3-D jaw field applies
    s_values: np.ndarray | None = None
    t_values: np.ndarray | None = None


class _Layout:
    """The parts of one identity, in a fixed order, and where each part's vertices start."""

    def __init__(self, p: HeadParams):
        self.p = p
        self.parts: list[_Part] = []
        self.landmarks: dict[str, tuple[str, int, int]] = {}
        _define_parts(self)

    def add(self, part: _Part) -> None:
        if part.s_values is None:
            part.s_values = (np.arange(part.ns) / part.ns * 2 - 1) if part.wrap else np.linspace(-1, 1, part.ns)
        if part.t_values is None:
            part.t_values = np.linspace(0, 1, part.nt)
        part.ns, part.nt = len(part.s_values), len(part.t_values)
        self.parts.append(part)

    def landmark(self, name: str, part: str, i: int, j: int) -> None:
        self.landmarks[name] = (part, i, j)


def _ll(p: HeadParams, u, v):
    return np.asarray(u) / p.rx, np.asarray(v) / p.rz


def _mouth(p: HeadParams, s, pose):
    """Mouth outline along s in [-1, 1]: u, inner/outer edges of both lips, extra offset, lip bulge."""
    jaw = pose.get("jaw_open", 0.0)
    pk = pose.get("pucker", 0.0)
    sl, sr = pose.get("smile_L", 0.0), pose.get("smile_R", 0.0)
    c = np.sqrt(np.clip(1 - s * s, 0, 1))
    c6 = np.clip(1 - s * s, 0, 1) ** 0.6
    smile = np.where(s > 0, sl, sr)
    a2 = np.abs(s) ** 2
    half_w = p.mouth_w * (1 - 0.12 * jaw) * (1 - 0.42 * pk) * (1 + 0.2 * smile * a2)
    u = half_w * s
    v0 = p.mouth_v + 0.12 * smile * a2 - 0.012 * (sl + sr) * (1 - a2) * 0.5
    h0 = 0.006 + 0.012 * pk
    upper_in = v0 + h0 * c + 0.02 * jaw * c6
    lower_in = v0 - h0 * c - 0.20 * jaw * c6 - 0.025 * smile * c
    thick = 1 + 0.8 * pk - 0.2 * smile
    bow = 1 - 0.3 * np.exp(-((s / 0.15) ** 2))
    upper_out = upper_in + p.lip_upper * thick * np.sqrt(c) * bow
    lower_out = lower_in - p.lip_lower * thick * c**0.6
    extra = 0.012 * pk
    return u, upper_in, lower_in, upper_out, lower_out, extra


def _eye_h(p: HeadParams, s):
    return p.eye_h * np.clip(1 - s * s, 0, 1) ** 0.6


def _eye_off(p: HeadParams, du, dv):
    r2 = (du / p.eye_w) ** 2 + (dv / p.eye_h) ** 2
    return 0.012 + 0.012 * np.clip(1 - r2, 0, 1)


def _disc(S, T):
    """Square [-1,1]^2 grid -> unit disc (elliptical grid mapping)."""
    return S * np.sqrt(np.clip(1 - T * T / 2, 0, 1)), T * np.sqrt(np.clip(1 - S * S / 2, 0, 1))


def _define_parts(L: _Layout) -> None:
    """Every part of the head, in the fixed order the vertex layout depends on."""
    _define_skull(L)
    _define_neck(L)
    if L.p.ears:
        _define_ears(L)
    if L.p.hair != "bald":
        _define_hair(L)
    _define_nose(L)
    for side, sg in (("L", 1.0), ("R", -1.0)):
        _define_eye(L, side, sg)
        _define_lid(L, side, sg)
        _define_brow(L, side, sg)
    _define_mouth(L)


def _define_skull(L: _Layout) -> None:
    """The skull (a wrapped longitude/latitude grid) and the landmarks on it: chin, jaw corners."""
    lat_vals = np.linspace(-np.pi / 2 + 0.06, np.pi / 2 - 0.04, 56)
    L.add(_Part("skull", 80, 56, lambda S, T, pose: (S * np.pi, T, 0.0 * S), "skin", wrap=True, t_values=lat_vals))
    # landmarks on the skull: nearest grid vertices
    sk = L.parts[-1]

    def nearest(lon, lat):
        i = int(np.argmin(np.abs(sk.s_values * np.pi - lon)))
        j = int(np.argmin(np.abs(sk.t_values - lat)))
        return i, j

    L.landmark("chin", "skull", *nearest(0.0, -1.0))
    L.landmark("jaw_L", "skull", *nearest(1.05, -0.62))
    L.landmark("jaw_R", "skull", *nearest(-1.05, -0.62))


def _define_neck(L: _Layout) -> None:
    """The neck: a cylinder, untouched by the jaw."""
    p = L.p
    rn = 0.42 * p.rx

    def neck(S, T, pose):
        a = S * np.pi
        z = -0.25 * p.rz + T * (-2.8)
        return np.stack([rn * np.sin(a), 0.12 - rn * np.cos(a), z], axis=-1)

    L.add(_Part("neck", 32, 6, neck, "neck", wrap=True, xyz=True, jaw=False))


def _define_ears(L: _Layout) -> None:
    """Both ears: discs on the sides of the skull."""
    p = L.p
    for side, sg in (("L", 1.0), ("R", -1.0)):

        def ear(S, T, pose, sg=sg):
            x, y = _disc(S, T * 2 - 1)
            lon = sg * (1.5 + 0.16 * x)
            lat = p.eye_v / p.rz - 0.08 + 0.26 * y
            off = 0.004 + 0.09 * np.clip(1 - x * x - y * y, 0, 1) ** 0.5
            return lon, lat, off

        L.add(_Part(f"ear_{side}", 9, 11, ear, "ear"))


def _define_hair(L: _Layout) -> None:
    """Hair (short, bob) or a cap with its brim, from a hairline that waves near the front."""
    p = L.p
    front = p.hairline / p.rz + (0.05 if p.hair == "cap" else 0.0)
    side_lat = {"short": 0.34, "bob": -0.25, "cap": 0.32}[p.hair]
    back_lat = {"short": -0.45, "bob": -0.55, "cap": -0.1}[p.hair]
    thick = p.hair_thick * (1.6 if p.hair == "bob" else 1.0)
    if p.hair == "cap":
        thick = 0.06

    wave = p.hair_wave if p.hair != "cap" else 0.0
    slant = p.hair_slant if p.hair != "cap" else 0.0

    def hairline(lon):
        a = np.abs(lon)
        base = np.interp(
            a,
            [0.0, 0.6, 1.1, 1.57, 2.1, np.pi],
            [front, front - 0.03, 0.5 * (front + side_lat), side_lat, 0.5 * (side_lat + back_lat), back_lat],
        )
        near_front = np.clip(1 - a / 1.2, 0, 1)
        return base + near_front * (wave * np.abs(np.sin(p.hair_freq * lon + p.hair_phase)) - wave + slant * lon)

    t_vals = np.concatenate([[0.0, 0.04, 0.1], np.linspace(0.18, 1.0, 14)])

    def hair(S, T, pose):
        lon = S * np.pi
        lo = hairline(lon)
        lat = lo + (np.pi / 2 - 0.04 - lo) * T
        off = 0.006 + thick * _smoothstep(T / 0.15)
        return lon, lat, off

    L.add(_Part("hair", 80, len(t_vals), hair, "hair", wrap=True, t_values=t_vals))
    if p.hair == "cap":

        def brim(S, T, pose):
            lon = S * 0.75
            lat0 = hairline(lon)
            base, n = _surface_with_normal(p, lon, lat0)
            fwd = np.array([0.0, -1.0, -0.12])
            pt = base + n * (0.006 + 0.02) + T[..., None] * 0.32 * np.cos(S[..., None] * 1.2) * fwd
            return pt

        L.add(_Part("brim", 17, 4, brim, "hair", xyz=True))


def _define_nose(L: _Layout) -> None:
    """The nose: a ridge from between the eyes to the tip, and the nose-tip landmark."""
    p = L.p
    t_nose = np.concatenate([np.linspace(0, 0.85, 9), [0.92, 1.0]])

    def nose(S, T, pose):
        v_top = p.eye_v - 0.02
        v_tip = p.nose_v
        v = np.where(T <= 0.85, v_top + (v_tip - v_top) * T / 0.85, v_tip - 0.05 * (T - 0.85) / 0.15)
        w = 0.035 + (p.nose_w - 0.035) * np.clip(T / 0.85, 0, 1) ** 1.5
        u = S * w
        h = np.where(
            T <= 0.85, p.nose_h * np.clip(T / 0.85, 0, 1) ** 1.3, p.nose_h * np.clip(1 - (T - 0.85) / 0.15, 0, 1) ** 0.7
        )
        off = 0.002 + h * np.clip(1 - S * S, 0, 1) ** 0.8
        lon, lat = _ll(p, u, v)
        return lon, lat, off

    L.add(_Part("nose", 9, len(t_nose), nose, "nose", t_values=t_nose))
    L.landmark("nose_tip", "nose", 4, 8)


def _define_eye(L: _Layout, side: str, sg: float) -> None:
    """One eye: its white, iris, pupil and highlight, and the eye's landmarks."""
    p = L.p
    cu, cv = sg * p.eye_u, p.eye_v

    def white(S, T, pose, sg=sg, cu=cu, cv=cv):
        du = p.eye_w * S
        dv = T * _eye_h(p, S) + sg * p.eye_tilt * S
        lon, lat = _ll(p, cu + sg * du, cv + dv)
        return lon, lat, _eye_off(p, du, dv)

    L.add(_Part(f"eye_white_{side}", 15, 9, white, "eye_white", t_values=np.linspace(-1, 1, 9)))
    L.landmark(f"lid_lower_{side}", f"eye_white_{side}", 7, 0)
    L.landmark(f"eye_outer_{side}", f"eye_white_{side}", 14, 4)
    L.landmark(f"eye_inner_{side}", f"eye_white_{side}", 0, 4)
    ri = p.iris_frac * p.eye_h
    for name, r, extra, mat, dz in (
        ("iris", ri, 0.004, "iris", 0.0),
        ("pupil", 0.45 * ri, 0.007, "pupil", 0.0),
        ("highlight", 0.15 * ri, 0.009, "highlight", 1.0),
    ):

        def disc(S, T, pose, r=r, extra=extra, dz=dz, cu=cu, cv=cv, ri=ri):
            x, y = _disc(S, T * 2 - 1)
            du = r * x + dz * 0.2 * ri  # the highlight sits up and to the right, inside the pupil
            dv = r * y + dz * 0.2 * ri
            lon, lat = _ll(p, cu + du, cv + dv)
            return lon, lat, _eye_off(p, du, dv) + extra

        L.add(_Part(f"{name}_{side}", 7, 7, disc, mat))
    L.landmark(f"pupil_{side}", f"pupil_{side}", 3, 3)


def _define_lid(L: _Layout, side: str, sg: float) -> None:
    """One upper eyelid, its lash line and the upper-lid landmark."""
    p = L.p
    cu, cv = sg * p.eye_u, p.eye_v

    # row 0 is the lid edge, row 0-1 the lash line, then skin up to above the eye
    def lid(S, T, pose, sg=sg, cu=cu, cv=cv, side=side):
        blink = pose.get(f"blink_{side}", 0.0)
        se = np.clip(S * 1.2, -1, 1)
        hh = _eye_h(p, se)
        openness = p.lid_open - (p.lid_open + 1.1) * blink
        edge = cv + openness * hh + sg * p.eye_tilt * se
        top = cv + 1.7 * p.eye_h + 0.25 * p.eye_h * np.clip(1 - S * S, 0, 1)
        lash = 0.016 * np.clip(1 - np.abs(S) ** 4, 0, 1)
        k = np.clip((T - 1 / 11) / (10 / 11), 0, 1)
        v = np.where(T <= 1 / 11, edge + lash * T * 11, edge + lash + (top - edge - lash) * k)
        u = cu + sg * 1.2 * p.eye_w * S
        off = 0.005 + 0.037 * (1 - _smoothstep((T - 0.75) / 0.25))
        lon, lat = _ll(p, u, v)
        return lon, lat, off

    L.add(_Part(f"lid_{side}", 17, 12, lid, lambda i, j: "lash" if j == 0 else "skin", t_values=np.linspace(0, 1, 12)))
    L.landmark(f"lid_upper_{side}", f"lid_{side}", 8, 0)


def _define_brow(L: _Layout, side: str, sg: float) -> None:
    """One brow and its landmark."""
    p = L.p

    # brow
    def brow(S, T, pose, sg=sg, side=side):
        raise_ = pose.get(f"brow_raise_{side}", 0.0)
        bu = p.eye_u + 0.01 + p.brow_len * S
        th = p.brow_thick * (1 - 0.45 * ((S + 1) / 2) ** 2)
        v = (
            p.eye_v
            + p.eye_h
            + p.brow_gap
            + p.brow_arch * (1 - S * S)
            + p.brow_tilt * S
            + th * (T - 0.5)
            + raise_ * 0.12 * (0.75 + 0.25 * S)
        )
        lon, lat = _ll(p, sg * bu, v)
        off = 0.045 + 0.006 * np.clip(1 - (2 * T - 1) ** 2, 0, 1)
        return lon, lat, off

    L.add(_Part(f"brow_{side}", 13, 5, brow, "brow"))
    L.landmark(f"brow_{side}", f"brow_{side}", 6, 2)


def _define_mouth(L: _Layout) -> None:
    """The mouth: interior, teeth, upper and lower lip, all from the same outline; its landmarks."""
    p = L.p

    def interior(S, T, pose):
        u, ui, li, _, _, extra = _mouth(p, S, pose)
        c = np.sqrt(np.clip(1 - S * S, 0, 1))
        top, bot = ui + 0.012 * c, li - 0.012 * c
        lon, lat = _ll(p, u, top + (bot - top) * T)
        return lon, lat, 0.012 + extra + 0.0 * S

    L.add(_Part("mouth", 17, 5, interior, "mouth"))

    def teeth(S, T, pose):
        s = S * 0.62
        u, ui, li, _, _, extra = _mouth(p, s, pose)
        top = ui + 0.006
        bot = ui - 0.32 * (ui - li)
        lon, lat = _ll(p, u, top + (bot - top) * T)
        return lon, lat, 0.016 + extra + 0.0 * S

    L.add(_Part("teeth", 11, 3, teeth, "teeth"))

    def lip(S, T, pose, upper):
        u, ui, li, uo, lo, extra = _mouth(p, S, pose)
        a, b = (ui, uo) if upper else (li, lo)
        bulge = np.clip(1 - (2 * T - 1) ** 2, 0, 1) * np.sqrt(np.clip(1 - S * S, 0, 1))
        lon, lat = _ll(p, u, a + (b - a) * T)
        return lon, lat, 0.022 + extra + 0.012 * bulge

    L.add(_Part("lip_upper", 21, 5, lambda S, T, pose: lip(S, T, pose, True), "lip"))
    L.add(_Part("lip_lower", 21, 5, lambda S, T, pose: lip(S, T, pose, False), "lip"))
    L.landmark("mouth_corner_L", "lip_upper", 20, 0)
    L.landmark("mouth_corner_R", "lip_upper", 0, 0)
    L.landmark("lip_upper_inner", "lip_upper", 10, 0)
    L.landmark("lip_upper_outer", "lip_upper", 10, 4)
    L.landmark("lip_lower_inner", "lip_lower", 10, 0)
    L.landmark("lip_lower_outer", "lip_lower", 10, 4)


def _common_offset(p: HeadParams, lon, lat, pose):
    """Expression bumps shared by every layer (so layering is kept): cheeks for smiles, pucker."""
    u, v = lon * p.rx, lat * p.rz
    out = 0.0 * u
    for side, sg in (("L", 1.0), ("R", -1.0)):
        sm = pose.get(f"smile_{side}", 0.0)
        if sm:
            out = out + 0.06 * sm * np.exp(-(((u - sg * 0.3) ** 2 + (v - p.mouth_v - 0.16) ** 2) / (2 * 0.08**2)))
    pk = pose.get("pucker", 0.0)
    if pk:
        out = out + 0.06 * pk * np.exp(-((u**2 + ((v - p.mouth_v) / 1.2) ** 2) / (2 * 0.1**2)))
    return out


def _jaw_field(p: HeadParams, xyz: np.ndarray, jaw: float) -> np.ndarray:
    if not jaw:
        return xyz
    zm = p.mouth_v
    wz = _smoothstep((zm - 0.03 - xyz[..., 2]) / 0.3)
    wy = _smoothstep((0.45 * p.ry - xyz[..., 1]) / (0.6 * p.ry))
    w = (jaw * 0.11 * wz * wy)[..., None]
    return xyz + w * np.array([0.0, 0.3, -1.0])


# ----------------------------------------------------------------------------------------- public


@dataclass
class HeadTopology:
    faces: np.ndarray  # [F, 4] int32 quads
    face_materials: list[str]  # per face
    material_names: list[str]  # distinct, in first-use order
    part_slices: dict[str, slice]
    landmark_names: tuple[str, ...]
    landmark_vertices: np.ndarray  # [L] int


#: Head centre height above the neck pivot (the object origin), in Blender units.
HEAD_CENTRE_Z = 0.75


def head_geometry(p: HeadParams, pose: dict[str, float] | None = None) -> np.ndarray:
    """Vertices [N,3] float64 (object space: the neck pivot at the origin) for an expression."""
    pose = {k: float(v) for k, v in (pose or {}).items() if v}
    unknown = set(pose) - set(CURVE_IDS)
    if unknown:
        raise ValueError(f"unknown expression ids: {sorted(unknown)}")
    layout = _layout(p)
    chunks = []
    for part in layout.parts:
        S, T = np.meshgrid(part.s_values, part.t_values, indexing="ij")
        if part.xyz:
            xyz = np.asarray(part.fn(S, T, pose), dtype=np.float64)
        else:
            lon, lat, off = part.fn(S, T, pose)
            lon = np.broadcast_to(lon, S.shape)
            lat = np.broadcast_to(lat, S.shape)
            off = np.broadcast_to(off, S.shape) + _common_offset(p, lon, lat, pose)
            pos, n = _surface_with_normal(p, lon, lat)
            xyz = pos + off[..., None] * n
        if part.jaw:
            xyz = _jaw_field(p, xyz, pose.get("jaw_open", 0.0))
        chunks.append(xyz.reshape(-1, 3))
    verts = np.concatenate(chunks, axis=0)
    verts[:, 2] += HEAD_CENTRE_Z
    return verts


def _layout(p: HeadParams) -> _Layout:
    return _Layout(p)


def head_topology(p: HeadParams) -> HeadTopology:
    """Faces (quads, outward facing), their materials, part ranges and landmark vertex indices."""
    layout = _layout(p)
    basis = head_geometry(p)
    faces, mats, slices = [], [], {}
    start = 0
    for part in layout.parts:
        ns, nt = part.ns, part.nt
        idx = np.arange(ns * nt).reshape(ns, nt) + start
        i_max = ns if part.wrap else ns - 1
        quads = []
        for i in range(i_max):
            i2 = (i + 1) % ns
            for j in range(nt - 1):
                quads.append((idx[i, j], idx[i2, j], idx[i2, j + 1], idx[i, j + 1]))
                mats.append(part.material(i, j) if callable(part.material) else part.material)
        q = np.array(quads, dtype=np.int64)
        # orient outwards: away from the head centre (or the neck axis)
        c = basis[q].mean(axis=1)
        a, b, d = basis[q[:, 0]], basis[q[:, 1]], basis[q[:, 3]]
        n = np.cross(b - a, d - a)
        ref = np.array([0.0, 0.12, 0.0]) if part.name == "neck" else np.array([0.0, 0.0, HEAD_CENTRE_Z])
        outward = c - ref
        if part.name == "neck":
            outward[:, 2] = 0.0
        if np.sum(np.einsum("ij,ij->i", n, outward) < 0) > len(q) / 2:
            q = q[:, ::-1]
        faces.append(q)
        slices[part.name] = slice(start, start + ns * nt)
        start += ns * nt
    names = []
    for m in mats:
        if m not in names:
            names.append(m)
    part_by_name = {part.name: part for part in layout.parts}
    lm = []
    for name in LANDMARK_NAMES:
        pname, i, j = layout.landmarks[name]
        part = part_by_name[pname]
        lm.append(slices[pname].start + i * part.nt + j)
    return HeadTopology(
        np.concatenate(faces).astype(np.int32), mats, names, slices, LANDMARK_NAMES, np.array(lm, dtype=np.int64)
    )
