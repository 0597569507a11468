"""Python keyword arguments into the binary's flags, one rule for every command.

``max_tokens=800`` is ``--max-tokens 800``; ``True`` is the bare flag and ``False`` or ``None``
leaves it out; a list or tuple repeats the flag once per item; a ``timedelta`` is written in
milliseconds (``1500ms``); a path as its text. Which flags exist, and what they mean, is the
binary's business: an unknown one is its usage error.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping


def _text(value: object) -> str:
    if isinstance(value, datetime.timedelta):
        return f"{round(value.total_seconds() * 1000)}ms"
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    return str(value)


def to_argv(settings: Mapping[str, object]) -> list[str]:
    """The flags for ``settings``, in their order."""
    argv: list[str] = []
    for name, value in settings.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, _text(item)]
        else:
            argv += [flag, _text(value)]
    return argv
