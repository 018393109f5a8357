"""Apple ARKit's 52 blendshape names, recognised on shape keys in the spellings game pipelines use.

No torch, no bpy: plain name logic, used by the add-on's ARKit mapping table and the Live Link Face export.

Three spellings are in use for the same 52 shapes (0 = neutral, 1 = full):

- Apple's ARKit identifiers (``jawOpen``, ``eyeBlinkLeft``, ``mouthSmileRight``): Ready Player Me, VRM models made
  for face tracking, Faceit's ARKit expression set;
- the ``_L`` / ``_R`` style (``eyeBlink_L``, ``jaw_Open``): some exporters and VRoid-derived rigs;
- Live Link Face's CSV columns (``JawOpen``, ``EyeBlinkLeft``): Epic's app, Unreal, MetaHuman pose assets.

:func:`arkit_name` reads any of them case-insensitively (separators ``_ - . space`` ignored, ``L``/``R`` suffixes
read as ``Left``/``Right``, a namespace such as ``blendShape1.`` or ``Face:`` dropped, Blender's ``.001`` suffix
dropped) and returns Apple's spelling, or None for a custom name (those map by hand).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The 52 shapes in Live Link Face's CSV order (columns 3-54 of its header), Apple's spelling.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft",
    "eyeLookDownLeft",
    "eyeLookInLeft",
    "eyeLookOutLeft",
    "eyeLookUpLeft",
    "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight",
    "eyeLookDownRight",
    "eyeLookInRight",
    "eyeLookOutRight",
    "eyeLookUpRight",
    "eyeSquintRight",
    "eyeWideRight",
    "jawForward",
    "jawRight",
    "jawLeft",
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthRight",
    "mouthLeft",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "noseSneerLeft",
    "noseSneerRight",
    "tongueOut",
)

_KEY = {n.lower(): n for n in ARKIT_NAMES}
_SEPARATORS = re.compile(r"[\s_\-.]+")
_BLENDER_DUPLICATE = re.compile(r"\.\d{3}$")


def livelink_name(name: str) -> str:
    """Apple's spelling -> Live Link Face's CSV column (``jawOpen`` -> ``JawOpen``)."""
    return name[:1].upper() + name[1:]


def underscore_name(name: str) -> str:
    """Apple's spelling -> the ``_L``/``_R`` style (``eyeBlinkLeft`` -> ``eyeBlink_L``, ``jawOpen`` -> ``jaw_Open``)."""
    for side, short in (("Left", "_L"), ("Right", "_R")):
        if name.endswith(side) and len(name) > len(side):
            return name[: -len(side)] + short
    m = re.match(r"([a-z]+)([A-Z].*)", name)
    return f"{m.group(1)}_{m.group(2)}" if m else name


def _match(text: str) -> str | None:
    flat = _SEPARATORS.sub("", text).lower()
    if not flat:
        return None
    if flat in _KEY:
        return _KEY[flat]
    raw = text.rstrip()
    # a one-letter side suffix: eyeBlink_L, eyeBlinkL, EyeBlink.R (not a lower-case l ending a word)
    m = re.search(r"(?:[\s_\-.]([LRlr])|([LR]))$", raw)
    if m:
        side = "left" if (m.group(1) or m.group(2)).lower() == "l" else "right"
        stem = _SEPARATORS.sub("", raw[: m.start()]).lower()
        return _KEY.get(stem + side)
    return None


def arkit_name(name: str) -> str | None:
    """The ARKit shape (Apple's spelling) that a shape-key ``name`` spells, or None."""
    text = _BLENDER_DUPLICATE.sub("", str(name).strip())
    found = _match(text)
    if found is None:
        for sep in (":", "."):
            if sep in text:
                found = _match(text.rsplit(sep, 1)[1])
                if found:
                    break
    return found


def guess_mapping(names: Iterable[str]) -> dict[str, str]:
    """Shape-key name -> ARKit shape for every name that spells one; each ARKit shape is taken by the first
    key that spells it (a second spelling of the same shape stays unmapped)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for n in names:
        a = arkit_name(n)
        if a is not None and a not in taken:
            out[n] = a
            taken.add(a)
    return out
