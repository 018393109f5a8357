"""docs/bad-inputs.md stays in step with the suite: every test it names exists, and every bad-input test has a row.

Detection rule (read with ``ast``; the test modules are never imported). A test is a bad-input test when it is a
module-level ``def test_*`` in ``tests/**/test_*.py`` (this file excepted) whose source contains, or that calls a
helper function of its own module whose source contains, one of:

- ``pytest.raises(``: any expected failure (FommError, a cancel's KeyboardInterrupt, a Blender operator's
  RuntimeError, ...);
- an exit status of 2 or 130 compared: ``returncode == 2``, ``rc == 2``, ``code == 2``, ``main(...) == 2``, also
  with 130;
- a worker client end state: ``== CANCELLED`` or ``== FAILED``;
- an operator report of ``'ERROR'`` (or ``"ERROR"``).

Such a test must appear as ``tests/PATH.py::test_name`` in a table row of the doc. Tests the doc names beyond these
(a truncated file that still decodes, a warning) are fine.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DOC = REPO / "docs" / "bad-inputs.md"

PATTERNS = (
    re.compile(r"pytest\.raises\("),
    re.compile(r"\b(?:returncode|rc|code)\s*==\s*(?:2|130)\b"),
    re.compile(r"\bmain\(.*\)\s*==\s*(?:2|130)\b"),
    re.compile(r"==\s*(?:CANCELLED|FAILED)\b"),
    re.compile(r"""['"]ERROR['"]"""),
)
REF = re.compile(r"\b(tests/[\w/]+\.py)::(\w+)\b")


def matches_rule(source: str) -> bool:
    """True if a function's source holds one of the bad-input markers."""
    return any(p.search(source) for p in PATTERNS)


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def bad_input_tests(source: str) -> list[str]:
    """Names of the bad-input tests defined in one module's source (the rule in the module docstring)."""
    tree = ast.parse(source)
    funcs = _functions(tree)
    helpers = {
        f.name for f in funcs if not f.name.startswith("test_") and matches_rule(ast.get_source_segment(source, f))
    }
    found = []
    for f in funcs:
        if not f.name.startswith("test_"):
            continue
        called = {n.func.id for n in ast.walk(f) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        if matches_rule(ast.get_source_segment(source, f)) or called & helpers:
            found.append(f.name)
    return found


def suite_modules() -> list[Path]:
    """The suite's test modules, this one excepted."""
    return sorted(p for p in TESTS.rglob("test_*.py") if p.resolve() != Path(__file__).resolve())


def doc_refs(text: str, rows_only: bool) -> set[tuple[str, str]]:
    """``(path, test name)`` pairs the doc names (in table rows only, or anywhere)."""
    lines = text.splitlines()
    if rows_only:
        lines = [line for line in lines if line.lstrip().startswith("|")]
    return {(m.group(1), m.group(2)) for line in lines for m in REF.finditer(line)}


def test_every_named_test_exists() -> None:
    refs = doc_refs(DOC.read_text(encoding="utf-8"), rows_only=False)
    assert refs, "docs/bad-inputs.md names no tests"
    missing = []
    for rel, name in sorted(refs):
        path = REPO / rel
        if not path.is_file():
            missing.append(f"{rel}::{name} (no such file)")
            continue
        defined = {f.name for f in _functions(ast.parse(path.read_text(encoding="utf-8")))}
        if name not in defined:
            missing.append(f"{rel}::{name} (no such test function)")
    assert not missing, "docs/bad-inputs.md names tests that do not exist:\n" + "\n".join(missing)


def test_every_bad_input_test_has_a_row() -> None:
    listed = doc_refs(DOC.read_text(encoding="utf-8"), rows_only=True)
    detected = set()
    for path in suite_modules():
        rel = path.relative_to(REPO).as_posix()
        for name in bad_input_tests(path.read_text(encoding="utf-8")):
            detected.add((rel, name))
    assert detected, "the detection rule found no bad-input tests: is it broken?"
    missing = sorted(f"{rel}::{name}" for rel, name in detected - listed)
    assert not missing, (
        "bad-input tests without a row in docs/bad-inputs.md (add the input, where, the message and the test):\n"
        + "\n".join(missing)
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    with pytest.raises(FommError, match='x'):\n        f()\n", True),
        ("    with pytest.raises(KeyboardInterrupt):\n        f()\n", True),
        ("    assert proc.returncode == 2, proc.stderr\n", True),
        ("    assert rc == 2 and 'x' in events[-1]['message']\n", True),
        ("    assert code == 2\n", True),
        ("    assert main(['--out', str(f)]) == 2\n", True),
        ("    assert proc.returncode == 130\n", True),
        ("    assert worker.wait(timeout=30) == FAILED\n", True),
        ("    assert op() == {'CANCELLED'} and reports == [('ERROR', 'x')]\n", True),
        ("    assert proc.returncode == 0, proc.stderr\n", False),
        ("    assert keep[:, 2].sum() == 2\n", False),
        ("    assert clip.reference_frame == 2 and kp.down.stride == 2\n", False),
        ("    assert probe.returncode != 0\n", False),
        ("    assert bpy.ops.fomm.bake_shape_keys() == {'FINISHED'}\n", False),
    ],
)
def test_detection_rule_examples(body: str, expected: bool) -> None:
    source = f"def test_x():\n{body}"
    assert (bad_input_tests(source) == ["test_x"]) is expected


def test_detection_follows_helpers_of_the_same_module() -> None:
    source = (
        "def _check(r):\n    assert r.returncode == 2\n\n\n"
        "def test_uses_helper():\n    _check(run())\n\n\n"
        "def test_plain():\n    assert run().returncode == 0\n"
    )
    assert bad_input_tests(source) == ["test_uses_helper"]
