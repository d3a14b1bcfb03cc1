"""One error type for bad input, so every entry point can report file + problem the same way."""
from __future__ import annotations


class BadInputError(ValueError):
    """A file (or case) that cannot be used, with the reason a person can act on."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
