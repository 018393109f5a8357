"""Code shape: no function outside the tests is longer than 80 lines unless a reason is written beside it.

A function (or method, nested ones included) counts from its ``def`` line to its last line. A longer one passes only
with a comment ``# long: <reason>`` on the line above its ``def`` (above its first decorator, if any) or on a line
from its ``def`` down to its first statement, e.g.::

    # long: one table of the 40 shipped parts, clearer in one place than split
    def _define_parts(...):

The files checked: every ``.py`` under ml_core, blender_fomm, tools, bench and demo, and build_addon.py (the tests and
the virtual environments are not walked).
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("ml_core", "blender_fomm", "tools", "bench", "demo")
FILES = ("build_addon.py",)
MAX_LINES = 80
REASON = re.compile(r"#\s*long:\s*\S")


def checked_files() -> list[Path]:
    """The project's own Python files, tests and virtual environments left out."""
    out = [REPO / f for f in FILES if (REPO / f).is_file()]
    for folder in FOLDERS:
        out += [p for p in sorted((REPO / folder).rglob("*.py")) if "__pycache__" not in p.parts]
    return out


def long_functions(source: str, name: str = "<source>", limit: int = MAX_LINES) -> list[str]:
    """``name:LINE function (N lines)`` for each function of ``source`` over ``limit`` lines without a
    ``# long: <reason>`` comment beside it."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = node.end_lineno - node.lineno + 1
        if length <= limit:
            continue
        top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        # 1-based line numbers: the line above the def (or its decorators), then the def down to the first statement
        near = [top - 1, *range(node.lineno, node.body[0].lineno + 1)]
        if any(REASON.search(lines[i - 1]) for i in near if 1 <= i <= len(lines)):
            continue
        found.append(f"{name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_over_80_lines_without_a_reason():
    files = checked_files()
    assert len(files) > 50, "the walk found too few files: the folders moved?"
    found = []
    for path in files:
        found += long_functions(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert not found, (
        f"functions over {MAX_LINES} lines: split them into readable units, or write why not in a comment "
        "'# long: <reason>' on the line above the def:\n" + "\n".join(found)
    )


def _function(body_lines: int, above: str = "", first: str = "", decorator: str = "") -> str:
    body = "\n".join(f"    x{i} = {i}" for i in range(body_lines))
    head = f"{above}\n" if above else ""
    head += f"{decorator}\n" if decorator else ""
    return textwrap.dedent(f"{head}def grown(a):\n{'    ' + first + chr(10) if first else ''}{body}\n")


def test_the_check_fails_when_a_function_grows():
    assert long_functions(_function(MAX_LINES - 1)) == []  # def + 79 lines: 80 in all
    assert long_functions(_function(MAX_LINES)) == ["<source>:1 grown (81 lines)"]
    nested = "def outer():\n" + textwrap.indent(_function(MAX_LINES), "    ") + "    return grown\n"
    assert [f.split()[1] for f in long_functions(nested)] == ["outer", "grown"]


def test_a_written_reason_lets_a_long_function_pass():
    assert long_functions(_function(100, above="# long: one table, clearer in one place")) == []
    assert long_functions(_function(100, first="# long: the steps read in order")) == []
    assert long_functions(_function(100, above="# long: a table", decorator="@staticmethod")) == []
    assert long_functions(_function(100, above="# long:")) != []  # a reason must be given
    assert long_functions(_function(100, above="# a comment")) != []
