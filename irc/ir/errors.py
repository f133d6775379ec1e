"""The located error every stage of irc raises for a mistake in user input.

`CompileError` carries a message and a Loc (file, line, column); irc.diagnostics
formats it with the source line and a caret. It lives in irc.ir so that the IR
parser and verifier can raise it without importing the rest of the project.
Also here: decoding source bytes (decode_source, read_source: UTF-8 or a located
error) and which files a diagnostic may show lines of (register_source,
trust_source_file).
"""

from __future__ import annotations

import os
from typing import Optional

from irc.ir.core import Loc

# Source texts of what is being compiled (irc.loads, `-`, a file read by the
# CLI), so a diagnostic can show the offending line.
_SOURCES: dict = {}
# Files whose lines a diagnostic may read from disk: files being compiled, and
# the Python files of the symbolic API's users. A location is data (an IR file
# may name any path in its loc(...)): lines of other files are never printed.
_TRUSTED_FILES: set = set()


def register_source(filename: str, text: str) -> None:
    _SOURCES[filename] = text


def trust_source_file(filename: str) -> None:
    """Allow diagnostics to show lines of `filename`, read from disk."""
    _TRUSTED_FILES.add(filename)


def source_line(filename: str, line: int) -> Optional[str]:
    text = _SOURCES.get(filename)
    if text is None and filename in _TRUSTED_FILES and os.path.isfile(filename):
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


def decode_source(data: bytes, filename: str) -> str:
    """The text of a source file: UTF-8, with or without a byte-order mark.
    Other encodings are a CompileError at the first byte that is not UTF-8."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CompileError(
            "the file is UTF-16; irc reads UTF-8", Loc(filename, 1, 1), "save it as UTF-8"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        raise CompileError(
            f"byte 0x{data[e.start]:02x} is not UTF-8 (offset {e.start})",
            Loc(filename, line, col),
            "irc reads source files as UTF-8; convert the file (e.g. iconv -t UTF-8)",
        ) from None


def read_source(path: str) -> str:
    """Read and decode a source file (see decode_source); OSError propagates."""
    with open(path, "rb") as f:
        data = f.read()
    text = decode_source(data, path)
    register_source(path, text)
    return text


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
