"""The `.tg` parser's LALR tables, built once and stored without pickle.

Building the Lark parser from grammar/tg.lark costs ~0.5 s (grammar
analysis and LALR table construction); loading built tables costs a few
milliseconds. Lark's own `cache=True` stores them with pickle under a
predictable name in the shared temp folder, so a file planted there would run
code in every irc process; irc never does that. Instead the tables come from,
in order:

1. grammar/tg.lark.json, shipped with irc (package data), when it was made
   from this very grammar text with this Lark version and these options;
2. `lark-<hash>.json` in irc's private per-user cache folder (irc/cachedir.py:
   0700, owner checked), written the first time the shipped file did not fit;
3. building from the grammar (then written as in 2).

The files are JSON (Lark's `memo_serialize` data, with tuples and non-string
dict keys tagged so they come back exactly); reading one runs no code, and one
that does not load is ignored and rebuilt. Regenerate the shipped file after
editing the grammar with `python -m irc.frontend.lark_table`
(tests/frontend/test_parser_cache.py fails while it is stale).

Imports lark, irc.cachedir and the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

OPTIONS = {
    "parser": "lalr",
    "propagate_positions": True,
    "strict": True,
    "maybe_placeholders": True,
}
_TUPLE = "\x00tuple"
_DICT = "\x00dict"


def shipped_path() -> Path:
    """grammar/tg.lark.json: next to tg.lark (package data irc.grammar)."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("irc.grammar")
        for top in (spec and spec.submodule_search_locations) or ():
            return Path(top) / "tg.lark.json"
    except ImportError:
        pass
    return Path(__file__).resolve().parents[2] / "grammar" / "tg.lark.json"


def stamp(grammar: str) -> str:
    """What the tables depend on: the grammar text, Lark's version, the options."""
    import lark

    h = hashlib.sha256()
    for part in (grammar, lark.__version__, json.dumps(OPTIONS, sort_keys=True)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


# -- JSON with tuples and non-string keys ----------------------------------------------------------


def _encode(x):
    if isinstance(x, dict):
        if all(isinstance(k, str) and not k.startswith("\x00") for k in x):
            return {k: _encode(v) for k, v in x.items()}
        return {_DICT: [[_encode(k), _encode(v)] for k, v in x.items()]}
    if isinstance(x, tuple):
        return {_TUPLE: [_encode(v) for v in x]}
    if isinstance(x, list):
        return [_encode(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"cannot store a {type(x).__name__} in the parser table")


def _hook(d: dict):
    if len(d) == 1:
        if _TUPLE in d:
            return tuple(d[_TUPLE])
        if _DICT in d:
            return {_key(k): v for k, v in d[_DICT]}
    return d


def _key(k):
    return tuple(_key(v) for v in k) if isinstance(k, list) else k


def dumps(parser, grammar: str) -> bytes:
    from lark.grammar import Rule
    from lark.lexer import TerminalDef

    data, memo = parser.memo_serialize([TerminalDef, Rule])
    import lark

    doc = {
        "stamp": stamp(grammar),
        "grammar_sha256": hashlib.sha256(grammar.encode()).hexdigest(),
        "lark": lark.__version__,
        "data": _encode(data),
        "memo": _encode(memo),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def loads(blob: bytes, grammar: str):
    """The Lark parser stored in blob, or None when it is not for this grammar
    (or not a table at all)."""
    from lark import Lark

    try:
        doc = json.loads(blob.decode("utf-8"), object_hook=_hook)
        if not isinstance(doc, dict) or doc.get("stamp") != stamp(grammar):
            return None
        return Lark.load({"data": doc["data"], "memo": doc["memo"]})
    except Exception:  # anything that does not load is a miss: the tables are rebuilt
        return None


def load_parser(grammar: str):
    """The Lark parser of `grammar` (see the module docstring for where from)."""
    from irc import cachedir

    try:
        blob = shipped_path().read_bytes()
    except OSError:
        blob = None
    if blob is not None:
        p = loads(blob, grammar)
        if p is not None:
            return p
    name = f"lark-{stamp(grammar)[:32]}.json"
    blob = cachedir.read(name)
    if blob is not None:
        p = loads(blob, grammar)
        if p is not None:
            return p
    from lark import Lark

    p = Lark(grammar, **OPTIONS)
    try:
        cachedir.write(name, dumps(p, grammar))
    except TypeError:
        pass  # a Lark version whose tables hold other objects: no cache, still correct
    return p


def main() -> None:
    """Regenerate grammar/tg.lark.json from grammar/tg.lark."""
    from lark import Lark

    from irc.frontend.lark_parse import _grammar_text

    grammar = _grammar_text()
    out = shipped_path()
    blob = dumps(Lark(grammar, **OPTIONS), grammar)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, out)
    print(f"wrote {out} ({len(blob)} bytes)")


if __name__ == "__main__":
    main()
