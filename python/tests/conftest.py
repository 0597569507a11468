"""Every test runs in its own directory (``paceline.run`` keeps jobs under the current one) with
an API key variable set: the simulated provider accepts any key."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-paceline")
