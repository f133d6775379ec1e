"""The `.tg` front end: parse (Lark -> AST), irgen (AST -> tg IR).

`compile_source(text, filename, defines)` is the one entry point the API and
CLI use. Imports irc.ir and irc.ops only (never passes, runtime, api, cli).
"""

from __future__ import annotations

from irc.frontend.irgen import generate
from irc.frontend.parse import parse_source


def compile_source(text: str, filename: str, defines=None):
    """The tg IR module of `.tg` source text; raises CompileError."""
    import irc.ops  # noqa: F401  (registers the ops)

    return generate(parse_source(text, filename), filename, defines)


__all__ = ["compile_source", "parse_source", "generate"]
