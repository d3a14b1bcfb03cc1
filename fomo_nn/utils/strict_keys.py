"""The one rule for unknown keys: an error that names the key and suggests the nearest valid one.

Used wherever a dict from a file or the command line becomes a typed record (adaptation records,
checkpoints, method settings from plans.method and ``--set``), so a typo never passes silently.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class UnknownKeyError(ValueError):
    """A key that is not one of the valid ones; ``keys`` are the unknown keys, in the order given."""

    def __init__(self, message: str, keys: list[str]):
        super().__init__(message)
        self.keys = keys


def nearest(key: str, valid: Iterable[str]) -> str | None:
    """The valid key closest to `key` (difflib), or None if none is close."""
    matches = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_message(where: str, key: str, valid: Iterable[str], what: str = "key") -> str:
    valid = sorted(str(v) for v in valid)
    suggestion = nearest(key, valid)
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    return f"{where}: unknown {what} {key!r}{hint} (valid: {', '.join(valid)})"


def check_known_keys(where: str, given: Iterable[str], valid: Iterable[str], what: str = "key") -> None:
    """Raise UnknownKeyError naming each key of `given` not in `valid` and the nearest valid one."""
    valid = list(valid)
    known = set(valid)
    unknown = [str(k) for k in given if k not in known]
    if unknown:
        message = "\n".join(unknown_key_message(where, key, valid, what) for key in unknown)
        raise UnknownKeyError(message, unknown)
