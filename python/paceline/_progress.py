"""The progress bar of ``paceline.run``: tqdm (``tqdm.auto``: a widget in Jupyter, text in a
terminal), fed from the job's own figures (``paceline status --json``, read twice a second).
Without tqdm installed there is no bar, and nothing else changes.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ._errors import PacelineError

_POLL_SECONDS = 0.5


def available() -> bool:
    """Whether tqdm is installed."""
    return importlib.util.find_spec("tqdm") is not None


class Bar:
    """A bar that follows a job's status until closed; the binary's lines follow it."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        from tqdm.auto import tqdm  # noqa: PLC0415 (optional: imported only to draw)

        self._status = status
        self._bar = tqdm(total=None, unit="req", desc="paceline", dynamic_ncols=True)
        self._held: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(_POLL_SECONDS):
            self._update()

    def _update(self) -> None:
        try:
            status = self._status()
        except PacelineError:
            # The state is created by the run a moment after it starts.
            return
        total = status.get("total")
        if total and total != self._bar.total:
            # `reset`, not `total =`: Jupyter's widget takes the new size from it (a bar begun
            # without one is drawn full, as "size unknown", and stays so otherwise).
            self._bar.reset(total=total)
        self._bar.n = status.get("done", 0) + status.get("failed", 0)
        failed = status.get("failed", 0)
        if failed:
            self._bar.set_postfix(failed=failed, refresh=False)
        self._bar.refresh()

    def write(self, line: str) -> None:
        """Print ``line`` on stderr once the bar is closed (the binary's closing summary, a
        warning): printed while it moves, each line would redraw it."""
        self._held.append(line)

    def __enter__(self) -> Bar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if kind is None:
            self._update()
        self._bar.close()
        for line in self._held:
            print(line, file=sys.stderr)
