"""Where the `paceline` binary is: the one this package drives, and nothing else.

The wheel installs the binary among the environment's scripts (``bin/`` of a virtual
environment), beside this package; a user install (``pip install --user``) puts both in the
user scheme. The first place that holds it wins, then ``PATH``.
"""

from __future__ import annotations

import functools
import os
import shutil
import sysconfig
from pathlib import Path

from ._errors import PacelineError

_NAME = "paceline" + (sysconfig.get_config_var("EXE") or "")


def _script_dirs() -> list[Path]:
    """The scripts directories of this interpreter's install schemes, the default one first."""
    dirs = [sysconfig.get_path("scripts")]
    user = sysconfig.get_preferred_scheme("user")
    if user in sysconfig.get_scheme_names():
        dirs.append(sysconfig.get_path("scripts", user))
    return [Path(d) for d in dirs if d]


@functools.cache
def binary() -> str:
    """The path of the bundled ``paceline`` binary.

    Raises:
        PacelineError: no binary was found (the package was installed without its wheel's
            scripts, e.g. copied by hand).
    """
    for directory in _script_dirs():
        candidate = directory / _NAME
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(_NAME)
    if found is not None:
        return found
    searched = ", ".join(str(d) for d in _script_dirs())
    raise PacelineError(
        f"the paceline binary was not found in {searched} nor on PATH; "
        "install the paceline wheel (pip install paceline)",
        exit_code=None,
    )
