"""paceline from Python: every LLM API request through, at the highest rate the provider allows.

This package drives the ``paceline`` binary installed beside it by the same wheel; it
implements nothing of its own:

- :func:`run` — a batch job (``paceline run``): requests in, results back in input order,
  resumable by calling it again.
- :func:`gateway` — ``paceline serve`` on a free port for a ``with`` block: point an SDK at the
  URL it yields.
- :func:`mock` — the simulated provider (``paceline mock``) the same way, for tests; the
  ``paceline_mock`` pytest fixture is installed with it.
- :func:`binary` — the binary's path, for anything else (``subprocess.run([paceline.binary(),
  "plan", ...])``).
"""

from importlib.metadata import PackageNotFoundError, version

from ._binary import binary
from ._errors import PacelineError
from ._run import Requests, Results, run
from ._server import BaseURL, gateway, mock

try:
    __version__ = version("paceline")
except PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "0+unknown"

__all__ = [
    "BaseURL",
    "PacelineError",
    "Requests",
    "Results",
    "binary",
    "gateway",
    "mock",
    "run",
]
