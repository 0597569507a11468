"""The one exception: paceline's own message and exit code."""

from __future__ import annotations


class PacelineError(Exception):
    """paceline refused or failed; ``str(err)`` is its message.

    Attributes:
        message: what paceline said (its ``error:`` lines, e.g. every invalid input line with
            its number).
        exit_code: the binary's exit code (2: usage or input errors, a state in use, an input
            that changed since the job began; 1: requests left without a result), or ``None``
            when the binary never ran.
    """

    def __init__(self, message: str, *, exit_code: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __repr__(self) -> str:
        return f"PacelineError({self.message!r}, exit_code={self.exit_code!r})"


def from_stderr(lines: list[str], exit_code: int | None) -> PacelineError:
    """The error a run of the binary ended with, from what it wrote on stderr.

    The binary reports a failure as ``error: MESSAGE`` (with its causes on the lines after); the
    message starts there. Without such a line, everything it wrote is the message.
    """
    start = next((i for i, line in enumerate(lines) if line.startswith("error: ")), None)
    if start is None:
        text = "\n".join(lines).strip() or f"paceline exited with code {exit_code}"
    else:
        text = "\n".join([lines[start].removeprefix("error: "), *lines[start + 1 :]]).strip()
    return PacelineError(text, exit_code=exit_code)
