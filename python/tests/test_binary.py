"""The wheel put the binary on the environment's PATH, and the package finds that one."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import paceline


def test_the_binary_is_on_path_in_the_environments_scripts() -> None:
    found = shutil.which("paceline")
    assert found is not None, "paceline is not on PATH"
    scripts = Path(sysconfig.get_path("scripts"))
    assert Path(found).parent.resolve() == scripts.resolve()
    assert paceline.binary() == str(scripts / "paceline")


def test_the_binary_runs_and_reports_the_packages_version() -> None:
    done = subprocess.run(["paceline", "--version"], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["paceline", paceline.__version__]


def test_python_dash_m_runs_the_binary() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "paceline", "status", "no-such-results.jsonl"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "no-such-results.jsonl" in done.stderr
