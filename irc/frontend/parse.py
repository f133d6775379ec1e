"""Parsing `.tg` text -> AST: the hand-written fast path (fastparse.py) first,
Lark (lark_parse.py) for anything it does not take, every error included.

Imports irc.ir and irc.frontend.fastparse; Lark only when the fast path falls back.
"""

from __future__ import annotations

from irc.frontend import ast as A
from irc.frontend.fastparse import Fallback, fast_parse
from irc.ir.errors import register_source


def parse_source(text: str, filename: str) -> A.Program:
    """Parse `.tg` text into an AST, raising CompileError on any mistake."""
    register_source(filename, text)
    if text.startswith("\ufeff"):
        text = " " + text[1:]  # a byte-order mark; a space keeps the columns of line 1
    # The hand-written parser first: the same AST, ~10x faster on long programs
    # and no Lark import; anything it does not take is parsed by Lark, which
    # reports every error.
    try:
        return fast_parse(text, filename)
    except Fallback:
        pass
    from irc.frontend.lark_parse import lark_parse

    return lark_parse(text, filename)
