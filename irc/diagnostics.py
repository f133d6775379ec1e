"""User-facing diagnostics: the located CompileError and its text form.

`FILE:LINE:COL: error: message`, then the source line and a caret under the
column (and an optional hint). CompileError lives in irc.ir.errors so that the IR
parser and verifier can raise it; this module is the name the rest of the
project (front end, CLI, API) imports it by. Imports only irc.ir.
"""

from __future__ import annotations

from typing import Optional

from irc.ir.core import Loc
from irc.ir.errors import CompileError, register_source, source_line

__all__ = ["CompileError", "Loc", "format_diagnostic", "register_source", "source_line"]


def format_diagnostic(
    message: str, loc: Optional[Loc] = None, severity: str = "error", hint: Optional[str] = None
) -> str:
    """The text of a diagnostic of any severity ("error", "warning", "note").

    Same layout as CompileError.format(), which is the one place that draws
    the source line and caret; only the severity word differs.
    """
    text = CompileError(message, loc, hint).format()
    if severity == "error":
        return text
    head = f"{loc}: error: " if loc is not None else "error: "
    return head[: -len("error: ")] + f"{severity}: " + text[len(head) :]
