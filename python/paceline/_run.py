"""``paceline.run``: a batch job through ``paceline run``, its results back as Python dicts.

Requests given in Python are written to a JSONL file first (Batch API lines, or one record per
item for a template), so that the binary reads a file as it always does; everything else —
validation, pacing, retries, the job's state, the output — is the binary's. The job's files
stay on disk (beside ``output``, or in ``.paceline/<digest>/`` of the current directory), so the
same call again resumes, as the same command does.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal, overload

from . import _progress
from ._binary import binary
from ._errors import PacelineError, from_stderr
from ._flags import to_argv

Requests = str | os.PathLike[str] | Iterable[Mapping[str, Any]] | Iterable[str]
"""What ``run`` takes: a path to an input file, Batch API request dicts, or, with a template,
strings (each one ``{line}``) or dicts (their keys are the placeholders)."""

_JOBS_DIR = ".paceline"
# Flags that act on a job rather than describe it: they leave its directory unchanged.
_CONTROL_FLAGS = frozenset({"restart", "retry_failed"})


class Results(Sequence[dict[str, Any]]):
    """A finished job's results: one dict per request, in input order.

    Each is a line of the output file as paceline wrote it: OpenAI's Batch API output,
    ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`` (a
    request that failed for good keeps the provider's last answer in ``response`` and says why
    in ``error``), or Anthropic's Message Batches results with ``output_format="anthropic"``.
    ``results[i]`` is the i-th request's, ``results.by_id["r7"]`` the one whose ``custom_id``
    is ``r7``. (For an input file with a template and ``id_field``, whose order is not read
    here, they are in the output's order.)
    """

    def __init__(
        self,
        results: list[dict[str, Any]],
        *,
        output: Path,
        summary: dict[str, Any],
        exit_code: int,
    ) -> None:
        self._results = results
        self._by_id = {str(r.get("custom_id")): r for r in results}
        self.output = output
        """The output file (JSONL, one line per request)."""
        self.summary = summary
        """The job's figures, as ``paceline status --json`` gives them: ``total``, ``done``,
        ``failed``, ``failed_by_code``, ``attempts``, ``retries``, ``rate_limited``, token
        counts, ``runs``, ``last_run`` and ``figures`` (the last run's achieved rate and its use
        of each limit's budget)."""
        self.exit_code = exit_code
        """The run's exit code: 0 when every request succeeded, 1 when some failed for good."""

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._results)

    @property
    def by_id(self) -> Mapping[str, dict[str, Any]]:
        """The results by ``custom_id``."""
        return self._by_id

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The results of the requests that failed for good, in input order."""
        return [r for r in self._results if _failed(r)]

    def __repr__(self) -> str:
        return f"<Results: {len(self)} requests, {len(self.failed)} failed, in {self.output}>"


def _failed(result: Mapping[str, Any]) -> bool:
    if "result" in result:  # Message Batches results
        return bool((result.get("result") or {}).get("type") != "succeeded")
    return result.get("error") is not None


def run(
    requests: Requests,
    *,
    output: str | os.PathLike[str] | None = None,
    model: str | None = None,
    template: str | None = None,
    base_url: str | None = None,
    provider: str | None = None,
    api_key_env: str | Sequence[str] | None = None,
    via: Literal["live", "batch"] = "live",
    progress: bool = True,
    **flags: object,
) -> Results:
    """Send every request through ``paceline run`` and return the results in input order.

    >>> results = paceline.run(  # doctest: +SKIP
    ...     topics, template="Write an SEO article about {line}", model="gpt-4o-mini"
    ... )

    Calling it again with the same arguments resumes the job where it stopped (after an
    exception, a Ctrl-C or a crash): requests with a result are not sent again.

    Args:
        requests: Batch API request dicts (``{"custom_id", "method", "url", "body"}``, or
            Anthropic's ``{"custom_id", "params"}``); with ``template``, strings (each one is
            ``{line}``) or dicts (their keys are the placeholders); or the path of an input
            file, read as ``paceline run`` reads it.
        output: the output file (OpenAI Batch API output JSONL); the job's state is kept
            beside it (``OUTPUT.paceline.db``), and requests given in Python in
            ``STEM.input.jsonl`` (``results.input.jsonl`` for ``results.jsonl``). Default:
            ``.paceline/<digest>/results.jsonl`` in the current directory, the digest naming
            the input and the options.
        model: the model of every request, in template mode.
        template: a prompt template with ``{field}`` placeholders; selects template mode.
        base_url: the provider's base URL (default OpenAI's API).
        provider: ``openai``, ``anthropic``, ``azure`` or ``openai-compatible`` (default: from
            the URL).
        api_key_env: the environment variable(s) holding API keys (default
            ``OPENAI_API_KEY``); keys are read by the binary, never passed through Python.
        via: ``live`` (paced at the key's limits) or ``batch`` (the provider's Batch API).
        progress: show a progress bar (needs tqdm: ``pip install 'paceline[progress]'``).
        **flags: any other flag of ``paceline run``: ``max_tokens=800``, ``system="..."``,
            ``rpm=500``, ``concurrency=8``, ``max_attempts=3``, ``config="paceline.toml"``,
            ``restart=True``, ``retry_failed=True``, ...

    Returns:
        The results, once every request has one.

    Raises:
        PacelineError: paceline refused the job or stopped before every request had a result
            (its message, e.g. each invalid line with its number, and its exit code).
        KeyboardInterrupt: interrupted; the requests in flight were finished and the state
            saved first (a second Ctrl-C stops at once), so calling again resumes.
    """
    options: dict[str, object] = {
        "model": model,
        "template": template,
        "base_url": base_url,
        "provider": provider,
        "api_key_env": api_key_env,
        "via": via,
        **flags,
    }
    if isinstance(requests, (str, os.PathLike)):
        source: Path | _Written = Path(requests)
    else:
        scratch = Path.cwd() / _JOBS_DIR if output is None else Path(output).resolve().parent
        scratch.mkdir(parents=True, exist_ok=True)
        source = _write(requests, templated=template is not None, directory=scratch)
        options["format"] = source.format
    argv = to_argv(options)

    if output is None:
        job = Path.cwd() / _JOBS_DIR / _digest(source, options)
        job.mkdir(parents=True, exist_ok=True)
        out = job / "results.jsonl"
    else:
        out = Path(output)
    if isinstance(source, _Written):
        input_path = _name_input(source, out)
        ids = source.ids
    else:
        input_path = source
        ids = None if template is not None else _batch_ids(source)

    state = flags.get("state")
    target = os.fspath(state) if isinstance(state, (str, os.PathLike)) else os.fspath(out)
    command = ["run", os.fspath(input_path), "--output", os.fspath(out), "--quiet", *argv]
    show = progress and _progress.available()
    code, said = _execute(command, bar=(lambda: _status(target)) if show else None)
    if code in (0, 1):
        summary = _status(target)
        if code == 0 or summary.get("pending", 0) + summary.get("in_flight", 0) == 0:
            return Results(_read(out, ids), output=out, summary=summary, exit_code=code)
    raise from_stderr(said, code)


class _Written:
    """Requests given in Python, written to a JSONL file."""

    def __init__(self, path: Path, sha256: str, format: str, ids: list[str] | None) -> None:
        self.path = path
        self.sha256 = sha256
        self.format = format
        self.ids = ids


def _write(requests: Iterable[Any], *, templated: bool, directory: Path) -> _Written:
    """Write ``requests`` to a temporary file in ``directory``, one JSON line each.

    Without a template each item is a Batch API line as given (its ``custom_id`` is the order's
    key); with one, a string ``s`` is the record ``{"line": s}`` (the template's ``{line}``) and
    a dict is a record as given, whose ``custom_id`` is its line number (or its ``id_field``).
    """
    digest = hashlib.sha256()
    ids: list[str] | None = [] if not templated else None
    fd, name = tempfile.mkstemp(prefix=".input-", suffix=".jsonl", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as file:
            for number, item in enumerate(requests, start=1):
                if isinstance(item, str):
                    if not templated:
                        raise TypeError(
                            f"request {number} is a string: strings need a template "
                            "(template='... {line} ...'), or give Batch API dicts"
                        )
                    record: object = {"line": item}
                elif isinstance(item, Mapping):
                    record = dict(item)
                    if ids is not None:
                        ids.append(str(item.get("custom_id")))
                else:
                    raise TypeError(
                        f"request {number} is a {type(item).__name__}: give dicts, or strings "
                        "with a template"
                    )
                line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
                digest.update(line.encode("utf-8"))
                file.write(line)
    except BaseException:
        os.unlink(name)
        raise
    return _Written(Path(name), digest.hexdigest(), "jsonl" if templated else "batch", ids)


def _name_input(written: _Written, output: Path) -> Path:
    """Move the written input beside the output, where the next call writes it again."""
    final = output.with_name(output.stem + ".input.jsonl")
    os.replace(written.path, final)
    return final


def _digest(source: Path | _Written, options: Mapping[str, object]) -> str:
    """The name of a job's directory: its input (the bytes written, or the file's path) and the
    flags that describe it."""
    digest = hashlib.sha256()
    if isinstance(source, _Written):
        digest.update(source.sha256.encode())
    else:
        digest.update(os.fsencode(source.resolve()))
    described = {k: v for k, v in options.items() if k not in _CONTROL_FLAGS}
    for arg in to_argv(described):
        digest.update(b"\0" + arg.encode("utf-8"))
    return digest.hexdigest()[:16]


def _batch_ids(path: Path) -> list[str] | None:
    """The ``custom_id``s of a Batch API file in their order, or ``None`` when it is not one
    (the binary reports what is wrong with a line; here a line that is not JSON is passed)."""
    ids = []
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            for line in file:
                if line.strip():
                    try:
                        value = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(value, dict) and "custom_id" in value:
                        ids.append(str(value["custom_id"]))
    except OSError:
        return None
    return ids


def _read(output: Path, ids: list[str] | None) -> list[dict[str, Any]]:
    """The output's results in input order: ``ids``'s order, else (a template's file) by line
    number where the ids are line numbers, else as written. Results the order does not name
    follow, as written."""
    by_id: dict[str, dict[str, Any]] = {}
    with output.open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                result = json.loads(line)
                by_id[str(result.get("custom_id"))] = result
    if ids is None:
        keys = list(by_id)
        if all(k.isdecimal() for k in keys):
            keys.sort(key=int)
    else:
        named = set(ids)
        keys = [i for i in ids if i in by_id] + [k for k in by_id if k not in named]
    return [by_id[k] for k in keys]


def _status(target: str) -> dict[str, Any]:
    """``paceline status --json`` of the job whose output (or state) is ``target``."""
    done = subprocess.run(
        [binary(), "status", "--json", target],
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    if done.returncode != 0:
        raise from_stderr(done.stderr.splitlines(), done.returncode)
    value = json.loads(done.stdout)
    if not isinstance(value, dict):
        raise PacelineError(f"paceline status printed {done.stdout!r}", exit_code=0)
    return value


def _pump(stream: IO[str], lines: list[str], echo: Callable[[str], None]) -> None:
    with stream:
        for raw in stream:
            line = raw.rstrip("\n")
            lines.append(line)
            echo(line)


def _execute(command: list[str], bar: Callable[[], dict[str, Any]] | None) -> tuple[int, list[str]]:
    """Run the binary to its end; its exit code and the lines it wrote (echoed on stderr).

    It runs in its own session, so a Ctrl-C reaches it once, from here: the first finishes the
    requests in flight and saves the state, as at a terminal.
    """
    proc = subprocess.Popen(
        [binary(), *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=os.name == "posix",
    )
    assert proc.stdout is not None
    lines: list[str] = []
    with _progress.Bar(bar) if bar is not None else _Plain() as shown:
        pump = threading.Thread(target=_pump, args=(proc.stdout, lines, shown.write), daemon=True)
        pump.start()
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            _interrupt(proc)
            raise
        finally:
            pump.join()
    return code, lines


def _interrupt(proc: subprocess.Popen[str]) -> None:
    """Stop the run as Ctrl-C does at a terminal: once gently, twice at once."""
    for _ in range(2):
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait()
            return
        except KeyboardInterrupt:
            continue
    proc.kill()
    proc.wait()


class _Plain:
    """No bar: lines go straight to stderr."""

    def write(self, line: str) -> None:
        print(line, file=sys.stderr)

    def __enter__(self) -> _Plain:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
