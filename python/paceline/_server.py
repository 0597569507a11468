"""``paceline serve`` and ``paceline mock`` as context managers.

Each starts the binary on a free loopback port (``--listen 127.0.0.1:0``: the binary binds it
and prints ``listening on http://ADDR``, so no port is guessed), waits until it answers, yields
its URL and stops it on exit (SIGTERM, so the gateway drains what is in flight; killed if it has
not stopped a minute later). What it writes on stderr (the gateway's access log) is kept, its
last lines, for the error raised when it fails to start; ``log_file=PATH`` keeps it all.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO

from ._binary import binary
from ._errors import PacelineError, from_stderr
from ._flags import to_argv

_STARTUP_TIMEOUT = 30.0
_STOP_TIMEOUT = 60.0
_ANNOUNCE = "listening on "
# Loopback only: no proxy from the environment applies.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BaseURL(str):
    """A server's base URL for an SDK: ``http://127.0.0.1:PORT/v1``.

    It is a ``str``, ready for ``openai.OpenAI(base_url=url)``. ``url.root`` is the server's
    address without ``/v1``: for ``anthropic.Anthropic(base_url=url.root)`` (that SDK adds
    ``/v1`` itself), ``/healthz``, ``/metrics`` or the mock's ``/_mock/stats``.
    """

    root: str

    def __new__(cls, root: str) -> BaseURL:
        url = super().__new__(cls, root + "/v1")
        url.root = root
        return url


def _pump(stream: IO[str], sink: Callable[[str | None], None]) -> None:
    """Every line of ``stream`` into ``sink``, then ``None`` when it closes."""
    with stream:
        for line in stream:
            sink(line.rstrip("\n"))
    sink(None)


def _announced(proc: subprocess.Popen[str], lines: queue.Queue[str | None], deadline: float) -> str:
    """The address the process announces on stdout."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PacelineError(
                f"paceline did not announce its address within {_STARTUP_TIMEOUT:.0f} s",
                exit_code=None,
            )
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            raise PacelineError("paceline closed its output before listening", exit_code=None)
        if line.startswith(_ANNOUNCE):
            return line[len(_ANNOUNCE) :].strip()


def _healthy(proc: subprocess.Popen[str], url: str, deadline: float) -> None:
    """Wait until ``url`` answers 200."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return
        try:
            with _DIRECT.open(url, timeout=1.0) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise PacelineError(f"{url} did not answer within {_STARTUP_TIMEOUT:.0f} s", exit_code=None)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        if os.name == "posix":
            proc.send_signal(signal.SIGTERM)
        else:
            proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _serving(command: list[str], health: str | None) -> Iterator[BaseURL]:
    proc = subprocess.Popen(
        [binary(), *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout: queue.Queue[str | None] = queue.Queue()
    stderr: collections.deque[str] = collections.deque(maxlen=200)

    def keep(line: str | None) -> None:
        if line is not None:
            stderr.append(line)

    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, stdout.put), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, keep), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        try:
            root = _announced(proc, stdout, deadline)
            if health is not None:
                _healthy(proc, root + health, deadline)
            if proc.poll() is not None:
                raise PacelineError("paceline stopped while starting", exit_code=None)
        except PacelineError as err:
            # A process that ended says why on stderr; one still running did not start in time.
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                raise err from None
            pumps[1].join()
            raise from_stderr(list(stderr), proc.returncode) from None
        yield BaseURL(root)
    finally:
        _stop(proc)
        for pump in pumps:
            pump.join()


def gateway(
    config: str | os.PathLike[str] | None = None, **settings: object
) -> contextlib.AbstractContextManager[BaseURL]:
    """Run ``paceline serve`` for the duration of a ``with`` block.

    >>> with paceline.gateway(base_url="https://api.openai.com/v1") as url:  # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=url)

    Args:
        config: a TOML config (``listen``, ``base_url``, ``[[keys]]``, ``[[clients]]``: the
            README's ``paceline.toml``).
        **settings: ``paceline serve``'s flags (``base_url``, ``provider``, ``api_key_env``,
            ``rpm``, ``tpm``, ``max_wait``, ``log_file``, ...), written over the config. It
            listens on a free loopback port unless ``listen`` is given. Upstream keys are read
            from the environment variables they name (``OPENAI_API_KEY`` by default).

    Yields:
        The gateway's :class:`BaseURL` (``http://127.0.0.1:PORT/v1``), once ``/healthz``
        answers.

    Raises:
        PacelineError: the gateway did not start (its message, e.g. a key variable not set,
            and its exit code).
    """
    settings = {"listen": "127.0.0.1:0", "config": config, **settings}
    return _serving(["serve", *to_argv(settings)], health="/healthz")


def mock(**settings: object) -> contextlib.AbstractContextManager[BaseURL]:
    """Run ``paceline mock``, the simulated provider, for the duration of a ``with`` block.

    >>> with paceline.mock(rpm=60, latency_ms=200, fail_500=0.05) as url:  # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=url, api_key="any")

    Args:
        **settings: ``paceline mock``'s flags (``rpm``, ``tpm``, ``key``, ``latency_ms``,
            ``fail_500``, ``seed``, ...). It listens on a free loopback port unless ``listen``
            is given.

    Yields:
        The mock's :class:`BaseURL` (``http://127.0.0.1:PORT/v1``), once it listens; its
        counters are at ``url.root + "/_mock/stats"``.

    Raises:
        PacelineError: the mock did not start (e.g. a flag it does not know).
    """
    settings = {"listen": "127.0.0.1:0", **settings}
    return _serving(["mock", *to_argv(settings)], health=None)
