"""Collect every user-facing message template in the code (for the troubleshooting page's completeness test).

A message is the first argument of a ``FommError(...)`` call, the text of a ``self.report({...}, "...")`` call, a
``_why_not(cls, "...")`` poll message or a ``notes.append(...)`` note. f-string placeholders become ``{expr}``; a
template's *fragments* are the literal pieces between placeholders.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("ml_core", "blender_fomm", "build_addon.py")


@dataclass(frozen=True)
class Message:
    path: str
    line: int
    kind: str  # error | report | poll | note
    template: str

    def fragments(self) -> list[str]:
        """Literal pieces of at least 4 visible characters, in order (the placeholders dropped)."""
        text = self.template
        while True:  # innermost placeholders first: an f-string placeholder may hold a nested f-string
            text, n = re.subn(r"\{[^{}]*\}", "\0", text)
            if n == 0:
                break
        return [p.strip() for p in text.split("\0") if len(p.strip()) >= 4]


def _template(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                out.append(str(v.value))
            else:
                out.append("{" + ast.unparse(v.value) + "}")  # type: ignore[attr-defined]
        return "".join(out)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        a, b = _template(node.left), _template(node.right)
        return None if a is None or b is None else a + b
    return None


def _name(func: ast.AST) -> str:
    return getattr(func, "id", None) or getattr(func, "attr", "")


def _files() -> list[Path]:
    files: list[Path] = []
    for src in SOURCES:
        p = ROOT / src
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return files


def collect() -> list[Message]:
    out: list[Message] = []
    for path in _files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            arg = None
            if name == "FommError" and node.args:
                kind, arg = "error", node.args[0]
            elif name == "report" and len(node.args) == 2:
                kind, arg = "report", node.args[1]
            elif name == "_why_not" and len(node.args) == 2:
                kind, arg = "poll", node.args[1]
            elif (
                name == "append"
                and getattr(node.func, "value", None) is not None
                and _name(node.func.value) == "notes"
                and node.args
            ):  # type: ignore[attr-defined]
                kind, arg = "note", node.args[0]
            if arg is None:
                continue
            text = _template(arg)
            if text is None:  # a variable: the message was made elsewhere and is collected there
                continue
            out.append(Message(rel, node.lineno, kind, " ".join(text.split())))
    return out
