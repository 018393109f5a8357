"""docs/troubleshooting.md lists every user-facing message in the code (errors, Blender reports and tooltips, notes).

A message counts as listed when one line of the page holds all of its literal pieces (at least 4 visible characters
each, the f-string placeholders dropped), in order. See tests/user_messages.py for what is collected.
"""

from __future__ import annotations

import pytest

from tests.user_messages import ROOT, Message, collect

DOC = ROOT / "docs" / "troubleshooting.md"
MESSAGES = collect()


def _listed(message: Message, lines: list[str]) -> bool:
    frags = message.fragments()
    for line in lines:
        pos = 0
        for frag in frags:
            pos = line.find(frag, pos)
            if pos < 0:
                break
            pos += len(frag)
        else:
            return True
    return False


def test_collects_the_codes_messages() -> None:
    kinds = {m.kind for m in MESSAGES}
    assert kinds == {"error", "report", "poll", "note"}
    assert len(MESSAGES) > 200
    assert all(m.fragments() for m in MESSAGES), [m for m in MESSAGES if not m.fragments()]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{m.path}:{m.line}")
def test_message_is_in_troubleshooting(message: Message) -> None:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    assert _listed(message, lines), (
        f"{message.path}:{message.line}: '{message.template}' has no row in docs/troubleshooting.md: "
        "add one (the message with UPPER CASE placeholders, what it means, what to do)"
    )


def test_the_check_can_fail() -> None:
    made_up = Message("x.py", 1, "error", "the flux capacitor {name} is not charged: plug it in")
    assert not _listed(made_up, DOC.read_text(encoding="utf-8").splitlines())
    assert _listed(made_up, ["`the flux capacitor NAME is not charged: plug it in` | charge it |"])
