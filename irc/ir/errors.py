"""The located error every stage of irc raises for a mistake in user input.

`CompileError` carries a message and a Loc (file, line, column); irc.diagnostics
formats it with the source line and a caret. It lives in irc.ir so that the IR
parser and verifier can raise it without importing the rest of the project.
"""

from __future__ import annotations

import os
from typing import Optional

from irc.ir.core import Loc

# Source texts of files that were not read from disk (irc.loads, `-`), so a
# diagnostic can still show the offending line.
_SOURCES: dict = {}


def register_source(filename: str, text: str) -> None:
    _SOURCES[filename] = text


def source_line(filename: str, line: int) -> Optional[str]:
    text = _SOURCES.get(filename)
    if text is None and filename and os.path.isfile(filename):
        try:
            with open(filename, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            return None
    if text is None:
        return None
    lines = text.splitlines()
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return None


class CompileError(Exception):
    """A mistake in a model or IR text, located at file:line:col."""

    def __init__(self, message: str, loc: Optional[Loc] = None, hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.hint = hint

    @property
    def file(self):
        return self.loc.file if self.loc else None

    @property
    def line(self):
        return self.loc.line if self.loc else None

    @property
    def column(self):
        return self.loc.col if self.loc else None

    def format(self) -> str:
        """`FILE:LINE:COL: error: message`, the source line, a caret, a hint."""
        if self.loc is None:
            head = f"error: {self.message}"
            return head + (f"\n  hint: {self.hint}" if self.hint else "")
        out = [f"{self.loc}: error: {self.message}"]
        src = source_line(self.loc.file, self.loc.line)
        if src is not None:
            out.append("  " + src)
            col = max(self.loc.col, 1)
            prefix = src[: col - 1]
            out.append("  " + "".join("\t" if c == "\t" else " " for c in prefix) + "^")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


class CallError(ValueError, TypeError):
    """Wrong arguments at call time: count, names, shapes, dtypes or named dims.
    Raised at the call boundary by irc.api and by every backend (so it lives
    here, below them all); exported as irc.CallError."""
