"""Mutation fuzzing of the whole compiler (issue 20): the examples and a
grammar-covering program, mutated the way a careless or hostile user would
(token deletion, duplication and swaps, inserted grammar tokens, random
bytes, deep nesting, huge numbers and dims, long lines, CRLF, byte-order
marks), each run through irc.loads on the interpreter and then, if that
compiled, on the cpu backend.

Each case runs in a worker process (tests/hostile/fuzz_worker.py) under a
time bound, so a hang or a crash is a reported failure, not a stuck or dead
suite. Fails on any exception other than a located CompileError, any crash
and any case over the bound. The quick run is in the default suite; the long
run (>= 10^4 cases) is marked slow:

    python -m pytest -q -m slow tests/hostile/test_fuzz_mutations.py

IRC_FUZZ_CASES and IRC_FUZZ_TIMEOUT override the slow run's count and the bound.
"""

import base64
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fuzz_worker.py")
# Generous: a valid case compiles for two backends on a loaded CI machine.
TIMEOUT = float(os.environ.get("IRC_FUZZ_TIMEOUT", "30"))

GRAMMAR_TOUR = """seed 3
const H = 4
const K = H * 2 + 1 + H // 3 % 2
shared W: f32[3, H] = normal(0, 0.1)
shared b: f32[H] = zeros()
shared c: i32[2] = full(7)
def lin(x: f32[N, 3]) -> f32[N, H] { return x @ W + b }
def two(x: f32[N]) -> (f32[N], f32[N]) { return x, -x }
fn train(x: f32[N, 3], y: i32[N], lr: f32 = 0.5) -> f32 {
    p = softmax(lin(x))
    loss = mean(categorical_crossentropy(p, y))
    gW, gb = grad(loss, W, b)
    W <- W - lr * gW
    b <- b - lr * gb
    h = scan (r in x; s = zeros([H])) { s = tanh(s + r @ W) yield s }
    return loss + sum(h[-1, :]) * 0
}
fn misc(x: f32[N], i: i32) -> (f32[N], bool[N], f32) {
    a, z = two(x)
    m = where((x > 0.5) | (x < -0.5), a, z ** 2)
    q = x[1:N - 1]
    return m * 3.0, ~(x == x), sum(q) + cast(i, f32) + max(x[..., None], axis=0)[0]
}
"""


def corpus():
    out = {"tour": GRAMMAR_TOUR}
    for p in sorted((ROOT / "examples").glob("*.tg")):
        out[p.stem] = p.read_text(encoding="utf-8")
    return out


CORPUS = corpus()
NAMES = sorted(CORPUS)

_TOKEN = re.compile(
    r"\s+|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|[0-9]+"
    r"|<-|->|\*\*|//|==|!=|<=|>=|\.\.\.|\S"
)
GRAMMAR_TOKENS = (
    "fn def shared const seed scan grad return yield in steps truncate f32 f64 i32 i64 bool "
    "x W N H ( ) [ ] { } , : ; = <- -> + - * / // % @ ** < == != & | ~ 1 0 2.5 \"s\" None "
    "... true false zeros normal load softmax sum tanh where cast"
).split() + ["\n", "#c\n", "$", "\t", "\r"]
HUGE = [
    "99999999999999999999999999",
    "9223372036854775807",
    "9223372036854775808",
    "4294967296",
    "2147483648",
    "1e308",
    "1e999",
    "0.0000000000000000000000000001",
    "10 ** 100000000",
    "2 ** 63",
    "9" * 5000,
]


def tokens(src):
    return _TOKEN.findall(src)


def mutation():
    """One mutation: a function of (list of tokens) -> list of tokens, or of the text."""
    idx = st.integers(0, 10**6)
    return st.one_of(
        st.tuples(st.just("delete"), idx, st.integers(1, 4)),
        st.tuples(st.just("duplicate"), idx, st.integers(1, 4)),
        st.tuples(st.just("swap"), idx, idx),
        st.tuples(st.just("insert"), idx, st.sampled_from(GRAMMAR_TOKENS)),
        st.tuples(st.just("number"), idx, st.sampled_from(HUGE)),
        st.tuples(st.just("dim"), idx, st.sampled_from(HUGE[:6] + ["True", "class", "N*N*N*N"])),
        st.tuples(st.just("bytes"), idx, st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("nest"), idx, st.sampled_from([50, 500, 5000])),
        st.tuples(st.just("longline"), idx, st.sampled_from([1000, 20000])),
        st.tuples(st.just("crlf"), st.just(0), st.just(0)),
        st.tuples(st.just("bom"), st.sampled_from(["utf8", "utf16"]), st.just(0)),
    )


def apply(src: str, muts) -> bytes:
    toks = tokens(src)
    raw_prefix = b""
    raw_inserts = []
    for kind, a, b in muts:
        words = [i for i, t in enumerate(toks) if not t.isspace()] or [0]
        at = words[a % len(words)] if isinstance(a, int) else 0
        if kind == "delete":
            del toks[at : at + b]
        elif kind == "duplicate":
            toks[at:at] = toks[at : at + b]
        elif kind == "swap":
            j = words[b % len(words)]
            if at < len(toks) and j < len(toks):
                toks[at], toks[j] = toks[j], toks[at]
        elif kind == "insert":
            toks[at:at] = [" ", b, " "]
        elif kind == "number":
            nums = [i for i, t in enumerate(toks) if t[:1].isdigit()] or [at]
            toks[nums[a % len(nums)] : nums[a % len(nums)] + 1] = [b]
        elif kind == "dim":
            dims = [i for i in range(1, len(toks)) if toks[i - 1] in ("[", ",")] or [at]
            toks[dims[a % len(dims)] : dims[a % len(dims)] + 1] = [b]
        elif kind == "bytes":
            raw_inserts.append((a, b))
        elif kind == "nest":
            toks[at:at] = ["(" * b, "x", ")" * b, " + "] if a % 2 else ["-" * b, "x + "]
        elif kind == "longline":
            toks[at:at] = [" + ".join(["x"] * b), " + "]
        elif kind == "crlf":
            toks = [t.replace("\n", "\r\n") for t in toks]
        elif kind == "bom":
            raw_prefix = b"\xef\xbb\xbf" if a == "utf8" else b"\xff\xfe"
    data = "".join(toks).encode("utf-8")
    for pos, junk in raw_inserts:
        pos %= len(data) + 1
        data = data[:pos] + junk + data[pos:]
    return raw_prefix + data


# The most bytes one shared variable of a fuzz case may take.
SHARED_BYTES = 256 << 20


class Worker:
    """A long-lived fuzz worker; restarted after a crash or a hang."""

    def __init__(self, backends="interp,cpu"):
        self.backends = backends
        self.proc = None
        self.cases = 0
        self.slowest = 0.0

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), self.backends],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A mutated dim can ask for a shared variable of gigabytes that this
            # machine has (`i32[2147483648]`: 8 GiB, drawn and copied for minutes):
            # the bound makes it the located error of a variable over the limit,
            # which is the handling under test (runtime/state.py memory_limit).
            env=dict(os.environ, IRC_MAX_SHARED_BYTES=str(SHARED_BYTES)),
        )

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def run(self, data: bytes):
        """(kind, detail): ok, compile_error, exception, crash or timeout."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            req = {"src": data.decode("utf-8")}
        except UnicodeDecodeError:
            req = {"b64": base64.b64encode(data).decode("ascii")}
        t0 = time.monotonic()
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        # Imports and the first JIT warm-up are not the case's time.
        bound = TIMEOUT + (30 if self.cases == 0 else 0)
        ready, _, _ = select.select([self.proc.stdout], [], [], bound)
        if not ready:
            self.stop()
            return "timeout", f"over {bound:.0f} s"
        line = self.proc.stdout.readline()
        self.cases += 1
        self.slowest = max(self.slowest, time.monotonic() - t0) if self.cases > 1 else 0.0
        if not line:
            rc = self.proc.wait()
            err = self.proc.stderr.read()[-2000:]
            self.proc = None
            return "crash", f"worker exited with {rc}: {err}"
        out = json.loads(line)
        return out["kind"], out["detail"]


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.stop()


def check(worker, data: bytes, seen=None):
    if seen is not None:
        if data in seen:
            return
        seen.add(data)
    kind, detail = worker.run(data)
    assert kind in ("ok", "compile_error"), (
        f"{kind} on input {data[:300]!r}{'...' if len(data) > 300 else ''}\n{detail}"
    )
    return kind


SEEN: set = set()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.sampled_from(NAMES), st.lists(mutation(), min_size=1, max_size=3))
def test_mutated_examples_quick(worker, name, muts):
    check(worker, apply(CORPUS[name], muts), SEEN)


HOSTILE = [
    b"\xef\xbb\xbffn f(x: f32) -> f32 {\r\n return x\r\n}\r\n",
    "fn f(x: f32) -> f32 { return x }".encode("utf-16"),
    b"fn f(x: f32) -> f32 { return x # \xe9\xff }",
    b"fn f(x: f32) -> f32 { return " + b"(" * 5000 + b"x" + b")" * 5000 + b" }",
    b"fn f(x: f32) -> f32 { return " + b"-" * 20000 + b"x }",
    b"fn f(x: f32) -> f32 { return " + b" + ".join([b"x"] * 5000) + b" }",
    b"fn f(x: f32[" + b"9" * 100000 + b"]) -> f32 { return 1.0 }",
    b"fn f(x: f32[N*N*N*N*N*N*N*N]) -> f32 { return 1.0 }",
    b"fn f(x: f32[True], y: f32[class]) -> f32[True] { return x }",
    b"def a(x: f32) -> f32 { return b(x) }\ndef b(x: f32) -> f32 { return a(x) }\n"
    b"fn f(x: f32) -> f32 { return a(x) }",
    b"fn f() -> f32[2, 2] { return zeros([9223372036854775807, 2]) }",
    b"shared W: f32[3037000500, 3037000500] = zeros()\nfn f() -> f32 { return 1.0 }",
    b"shared c: i32[2147483648] = uniform(0, 1)\nfn f() -> f32 { return 1.0 }",  # (8 GiB)
    b"fn f(x: f32[N]) -> f32[N] { return x[2147483648:N - 1] }",  # (a bound beyond i32)
    b"\x00\x01\x02\x03",
    b"",
]


@pytest.mark.parametrize("data", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_inputs(worker, data):
    check(worker, data)


@pytest.mark.slow
def test_mutated_examples_long_run():
    """>= 10^4 distinct cases; prints the figures (cases, outcomes, slowest case)."""
    n = int(os.environ.get("IRC_FUZZ_CASES", "10000"))
    w = Worker()
    outcomes: dict = {}
    seen: set = set()
    t0 = time.monotonic()

    @settings(
        max_examples=n + n // 5,  # hypothesis repeats some cases; they are run once
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.sampled_from(NAMES), st.lists(mutation(), min_size=1, max_size=4))
    def run(name, muts):
        kind = check(w, apply(CORPUS[name], muts), seen)
        if kind is not None:
            outcomes[kind] = outcomes.get(kind, 0) + 1
            done = sum(outcomes.values())
            if done % 500 == 0:
                print(f"fuzz: {done} cases {outcomes} {time.monotonic() - t0:.0f} s", flush=True)

    try:
        run()
    finally:
        w.stop()
    total = sum(outcomes.values())
    print(
        f"\nfuzz: {total} distinct cases ({outcomes}) in {time.monotonic() - t0:.0f} s, "
        f"slowest {w.slowest:.2f} s"
    )
    assert total >= n
