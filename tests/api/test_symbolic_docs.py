"""docs/python-api.md runs: every ```python block, in order, in one namespace
(the document is one tutorial). A ```text block right after a python block
is its expected output (stdout, compared exactly). Snippets are compiled with
the file name docs/python-api.md and their real line numbers, so an error
in a snippet, and an irc error message shown in the document, point into it.

To refresh the text blocks after editing the document:
    python tests/api/test_symbolic_docs.py --update
"""

import contextlib
import io
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "python-api.md"
NAME = "docs/python-api.md"


def blocks(text: str) -> list:
    """(lang, first line of the fence, first code line (1-based), last fence line, code)."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            start = i
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != "```":
                j += 1
            out.append((m.group(1), start, i + 2, j, "\n".join(lines[i + 1 : j])))
            i = j + 1
        else:
            i += 1
    return out


def run(text: str, name: str = NAME) -> list:
    """Run the python blocks; returns (python block, output block or None, stdout) triples.

    The document gets its own table of unknown dims (irc.symbolic.variables._UNIFIER), so the
    names it prints (`u_0`) do not depend on what ran before it in this process."""
    import irc.ir.dims
    import irc.symbolic

    state = irc.symbolic.variables
    saved = state._UNIFIER, state._NAMED
    state._UNIFIER, state._NAMED = irc.ir.dims.Unifier(), set()
    try:
        return _run(text, name)
    finally:
        state._UNIFIER, state._NAMED = saved


def _run(text: str, NAME: str) -> list:
    import irc
    import irc.symbolic
    from irc.ir.errors import register_source

    for name in irc.symbolic.__all__:  # as tests/api/conftest.py, for --update runs
        irc._LAZY.setdefault(name, "irc.symbolic")
    register_source(NAME, text)
    bl = blocks(text)
    ns = {"__name__": "__irc_docs__"}
    results = []
    for k, b in enumerate(bl):
        lang, _, first, end, code = b
        if lang != "python":
            continue
        nxt = bl[k + 1] if k + 1 < len(bl) else None
        expected = nxt if nxt is not None and nxt[0] == "text" and nxt[1] - end <= 2 else None
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                exec(compile("\n" * (first - 1) + code, NAME, "exec"), ns)  # noqa: S102
            except Exception as e:
                raise AssertionError(
                    f"{NAME}:{first}: the snippet failed: {type(e).__name__}: {e}"
                ) from e
        # The page shows what users see, the default backend's name (cpu), where a
        # function prints itself; the tests run the snippets on other backends too
        # (and name "interp" the default: tests/conftest.py).
        out = re.sub(r"\((interp|cpu|opencl)\)>", "(cpu)>", buf.getvalue())
        results.append((b, expected, out))
    return results


def test_python_api_doc_runs():
    text = DOC.read_text(encoding="utf-8")
    results = run(text)
    assert len(results) >= 15
    for (_, _, first, _, _), expected, out in results:
        if expected is not None:
            assert out.rstrip("\n") == expected[4].rstrip("\n"), (
                f"output of the snippet at {NAME}:{first}"
            )


def update():
    # Outputs that change length move the lines below them, and error messages
    # show line numbers: repeat until the document is stable.
    for _ in range(5):
        text = DOC.read_text(encoding="utf-8")
        lines = text.split("\n")
        for _, expected, out in reversed(run(text)):
            if expected is not None:
                _, start, _, end, _ = expected
                lines[start + 1 : end] = out.rstrip("\n").split("\n")
        new = "\n".join(lines)
        DOC.write_text(new, encoding="utf-8")
        if new == text:
            return


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        import irc.api

        irc.api.DEFAULT_BACKEND = "interp"  # as tests/conftest.py
        update()
    else:
        print(__doc__)
