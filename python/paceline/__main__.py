"""``python -m paceline ARGS``: the bundled binary with ``ARGS``, as if run from PATH."""

from __future__ import annotations

import os
import subprocess
import sys

from ._binary import binary


def main() -> None:
    """Run the binary in this process's place (on POSIX), or as a child whose code it exits
    with."""
    path = binary()
    if os.name == "posix":
        os.execv(path, [path, *sys.argv[1:]])
    sys.exit(subprocess.call([path, *sys.argv[1:]]))


if __name__ == "__main__":
    main()
