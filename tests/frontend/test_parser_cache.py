"""The parser's tables are never unpickled from a shared place (issue 21): Lark's
own cache file in the temp dir is not read, the shipped tables match the grammar,
the per-user cache folder is private, and a damaged table is rebuilt."""

import json
import os
import pickle
import subprocess
import sys

from irc.frontend import lark_table
from irc.frontend.lark_parse import _grammar_text

SRC = "fn f(x: f32[N]) -> f32[N] { return x * 2 }\n"


class _Evil:
    """Unpickling this writes the marker file (what a planted cache file would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _lark_cache_name(tmp_path) -> str:
    """The name Lark(cache=True) gave its pickle for irc's grammar (irc's former call;
    the name hashes the options in this order)."""
    code = (
        "import tempfile, os; from lark import Lark; from irc.frontend.lark_parse import _grammar_text;"
        "Lark(_grammar_text(), parser='lalr', propagate_positions=True, strict=True, cache=True,"
        " maybe_placeholders=True);"
        "print([f for f in os.listdir(tempfile.gettempdir()) if f.startswith('.lark')][0])"
    )
    env = dict(os.environ, TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_planted_lark_cache_is_not_loaded(tmp_path, irc_exe):
    probe = tmp_path / "probe"
    probe.mkdir()
    name = _lark_cache_name(probe)
    shared = tmp_path / "shared"
    shared.mkdir()
    marker = tmp_path / "owned"
    # Lark's cache file: a line with the grammar's hash, a pickled set of used files,
    # then the pickled parser data
    with open(shared / name, "wb") as f:
        f.write(name.split("_")[3].encode() + b"\n")
        pickle.dump(_Evil(str(marker)), f)
        pickle.dump(_Evil(str(marker)), f)
    model = tmp_path / "m.tg"
    model.write_text(SRC)
    env = dict(os.environ, TMPDIR=str(shared), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run([irc_exe, "compile", str(model)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert not marker.exists(), "a pickle planted in the temp dir was loaded"


def test_shipped_tables_match_the_grammar():
    doc = json.loads(lark_table.shipped_path().read_text())
    import hashlib

    import lark

    assert doc["grammar_sha256"] == hashlib.sha256(_grammar_text().encode()).hexdigest(), (
        "grammar/tg.lark changed: run python -m irc.frontend.lark_table"
    )
    if doc["lark"] == lark.__version__:
        assert lark_table.loads(lark_table.shipped_path().read_bytes(), _grammar_text())


def test_tables_load_and_parse_like_a_fresh_build():
    from lark import Lark

    g = _grammar_text()
    fresh = Lark(g, **lark_table.OPTIONS)
    stored = lark_table.loads(lark_table.dumps(fresh, g), g)
    for src in (
        SRC,
        open(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "mlp.tg")).read(),
    ):
        assert stored.parse(src) == fresh.parse(src)


def test_user_cache_used_when_shipped_does_not_fit(tmp_path, monkeypatch):
    from irc import cachedir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(lark_table, "shipped_path", lambda: tmp_path / "missing.json")
    g = _grammar_text()
    p = lark_table.load_parser(g)
    (f,) = (tmp_path / "irc").glob("lark-*.json")
    assert oct(os.stat(tmp_path / "irc").st_mode & 0o777) == "0o700"
    assert p.parse(SRC)
    # a damaged table is rebuilt, not trusted
    f.write_bytes(b'{"stamp": 1}')
    assert lark_table.load_parser(g).parse(SRC) == p.parse(SRC)
    assert lark_table.loads(f.read_bytes(), g) is not None
    # the JSON names no code to run: a table doctored to name an object is refused
    doc = json.loads(f.read_text())
    doc["data"]["options"]["tree_class"] = "os.system"
    assert cachedir.read(f.name)  # readable...
    f.write_text(json.dumps(doc))
    assert lark_table.load_parser(g).parse(SRC) == p.parse(SRC)  # ...and still a correct parser


def test_cache_folder_must_be_private(tmp_path, monkeypatch):
    from irc import cachedir

    monkeypatch.setattr(cachedir, "_CHECKED", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = tmp_path / "irc"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    (d / "x").write_bytes(b"data")
    assert cachedir.read("x") == b"data"  # our own folder: tightened, then used
    assert os.stat(d).st_mode & 0o777 == 0o700
    os.chmod(d / "x", 0o666)
    assert cachedir.read("x") is None  # a file others could have written
    # a link where the folder should be is refused
    monkeypatch.setattr(cachedir, "_CHECKED", {})
    other = tmp_path / "other"
    other.mkdir()
    (other / "y").write_bytes(b"planted")
    link_home = tmp_path / "home2"
    link_home.mkdir()
    (link_home / "irc").symlink_to(other, target_is_directory=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(link_home))
    assert cachedir.read("y") is None
    cachedir.write("z", b"new")
    assert not (other / "z").exists()
