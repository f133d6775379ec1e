"""The `.tg` front end: parse (Lark -> AST), irgen (AST -> tg IR).

`compile_source(text, filename, defines)` is the one entry point the API and
CLI use. Imports irc.ir and irc.ops only (never passes, runtime, api, cli).
The parser and generator are imported when first used: `irc/__init__.py` reads the
built-ins table (irc.frontend.builtins) without loading the parser.
"""

from __future__ import annotations


def compile_source(text: str, filename: str, defines=None):
    """The tg IR module of `.tg` source text; raises CompileError."""
    import irc.ops  # noqa: F401  (registers the ops)
    from irc.frontend.irgen import generate
    from irc.frontend.parse import parse_source

    return generate(parse_source(text, filename), filename, defines)


def __getattr__(name):
    if name == "generate":
        from irc.frontend.irgen import generate

        return generate
    if name == "parse_source":
        from irc.frontend.parse import parse_source

        return parse_source
    raise AttributeError(f"module 'irc.frontend' has no attribute {name!r}")


__all__ = ["compile_source", "parse_source", "generate"]
