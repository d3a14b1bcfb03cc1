"""The one reader of per-case number files (`label.txt`, `CASE.txt`: targets and predictions).

Strict on purpose: "63 1", "63\\n70" and "6_3" (Python's float() accepts digit separators) are refused
rather than read as 63, because a silently misread target trains and scores the wrong model. A file
that is not UTF-8/ASCII (e.g. UTF-16 written by a Windows tool) is named, not a codec traceback.
"""
from __future__ import annotations

import re
from pathlib import Path

from fomo_nn.utils.errors import BadInputError

PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def parse_number(text: str) -> float | None:
    """One plain decimal number (surrounding whitespace allowed), finite; None otherwise."""
    text = text.strip()
    if not PLAIN_NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if abs(value) != float("inf") else None


def read_number_file(path: str | Path, valid_range: tuple[float, float] | None = None,
                     what: str = "value") -> float:
    """The single number in `path`; BadInputError naming the file if it holds anything else or lies
    outside `valid_range` (inclusive)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise BadInputError(path, f"cannot read ({error.strerror or error})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInputError(path, "not a UTF-8/ASCII text file (UTF-16? save it as plain text)") from None
    value = parse_number(text)
    if value is None:
        raise BadInputError(path, f"expected one number, found {text.strip()[:40]!r}")
    if valid_range is not None and not valid_range[0] <= value <= valid_range[1]:
        raise BadInputError(path, f"{what} {value:g} is outside the plausible range "
                                  f"[{valid_range[0]:g}, {valid_range[1]:g}]")
    return value
