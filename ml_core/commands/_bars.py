"""Progress bars of the command line: one tqdm bar per stage on stderr, shown only on a terminal unless quiet."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class StageBars:
    """One bar per stage, opened on its first update (the previous stage's bar closes then).

    ``progress(stage)`` gives a ``progress(done, total)`` callback; :meth:`close` ends them all, and with
    ``failed=True`` removes them from the terminal so that the error line stands alone.
    """

    def __init__(self, quiet: bool, unit: str = "frame") -> None:
        self.quiet = quiet
        self.unit = unit
        self.bars: dict[str, Any] = {}

    def _open(self, stage: str, total: int | None) -> Any:
        from tqdm import tqdm

        for other in self.bars.values():
            other.close()
        self.bars[stage] = tqdm(
            total=total,
            unit=self.unit,
            desc=stage,
            disable=True if self.quiet else None,  # None: only on a terminal
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        return self.bars[stage]

    def progress(self, stage: str) -> Callable[[int, int | None], None]:
        def update(done: int, total: int | None) -> None:
            bar = self.bars.get(stage) or self._open(stage, total)
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        return update

    def write(self, line: str) -> None:
        """A message above the bars (a note or a warning), on stderr."""
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)

    def close(self, failed: bool = False) -> None:
        for bar in self.bars.values():
            if failed:
                bar.leave = False  # the error line alone
            bar.close()
