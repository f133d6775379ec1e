"""A hypothesis strategy of random, well-typed `.tg` programs for differential testing
(tests/verify/test_random_programs.py checks each with irc verify on interp, cpu and
opencl).

A program has one entry function `f` over arguments x: f32[N, 3] (always), and
optionally xs: f32[T, N, 3], ms: f32[T, N, 1] (scan sequences) and img: f32[N, 2, H, Q]
(convolutions); shared variables W: f32[3, 4], V: f32[4, 3], U: f32[4, 4], b: f32[4],
F: f32[3, 2, 3, 3]. The body is a random sequence of statements drawn from: unary
and binary elementwise ops (with broadcasting against vectors, keepdims reductions
and literals), reductions (sum/mean/max/min, an axis or all, keepdims), matmul,
transpose, basic indexing and slicing, reshape and flatten, conv2d + max_pool2d, scan
with one or two sequences and one or two carries, grad of a scalar loss, and shared
updates. The generator tracks each value's shape (named dims N, T, H, W and static
sizes) and which shared variables it depends on, so every program type-checks.

Imports nothing of the project (the tests feed the text to irc).
"""

from __future__ import annotations

from hypothesis import strategies as st

SHARED = {
    "W": ("f32[3, 4]", "normal(0.0, 0.5)"),
    "V": ("f32[4, 3]", "normal(0.0, 0.5)"),
    "U": ("f32[4, 4]", "normal(0.0, 0.3)"),
    "b": ("f32[4]", "uniform(-0.5, 0.5)"),
    "F": ("f32[3, 2, 3, 3]", "normal(0.0, 0.3)"),
}
UNARY = [
    "tanh({})",
    "sigmoid({})",
    "relu({})",
    "abs({})",
    "sin({})",
    "({} * {})",
    "softplus({})",
    "exp(-({} * {}))",
    "sqrt({} * {} + 1.0)",
    "log1p({} * {})",
    "(-{})",
    "cos({})",
]
BINARY = [
    "({} + {})",
    "({} - {})",
    "({} * {})",
    "maximum({}, {})",
    "minimum({}, {})",
    "({} / (1.0 + {} * {}))",
]
REDUCE = ["sum", "mean", "max", "min"]
PLAIN = {"N", "T", "H", "Q", "1", "2", "3", "4"}  # sizes that can appear in fn signatures


class Gen:
    def __init__(self, draw):
        self.draw = draw
        self.lines: list = []
        self.vals: dict = {}  # name -> (shape tuple, frozenset of shared names)
        self.n = 0
        self.args = {"x": "f32[N, 3]"}
        self.used_shared: set = set()
        self.updated: set = set()
        self.grads: dict = {}  # shared name -> gradient value name

    # -- helpers -----------------------------------------------------------------------------
    def pick(self, seq):
        return self.draw(st.sampled_from(list(seq)))

    def new(self, expr, shape, deps) -> str:
        self.n += 1
        name = f"v{self.n}"
        self.lines.append(f"    {name} = {expr}")
        self.vals[name] = (tuple(shape), frozenset(deps))
        return name

    def shared(self, name):
        self.used_shared.add(name)
        return name

    def any_val(self, pred=lambda s: True):
        names = [k for k, (s, _) in self.vals.items() if pred(s)]
        return self.pick(names) if names else None

    # -- statements --------------------------------------------------------------------------
    def unary(self):
        v = self.any_val()
        s, d = self.vals[v]
        return self.new(self.pick(UNARY).replace("{}", v), s, d)

    def binary(self):
        v = self.any_val()
        s, d = self.vals[v]
        kinds = ["literal", "same"]
        if len(s) >= 1:
            kinds += ["suffix", "keepdims"]
        kind = self.pick(kinds)
        if kind == "literal":
            w, dw = self.pick(["0.5", "2.0", "(-1.5)", "1"]), frozenset()
        elif kind == "same":
            w = self.any_val(lambda t: t == s)
            dw = self.vals[w][1]
        elif kind == "suffix":
            cands = [
                k for k, (t, _) in self.vals.items() if 0 < len(t) < len(s) and s[-len(t) :] == t
            ]
            if s[-1] == "4":
                cands.append(self.shared("b"))
            if not cands:
                return self.unary()
            w = self.pick(cands)
            dw = self.vals[w][1] if w in self.vals else frozenset({"b"})
        else:
            ax = self.draw(st.integers(0, len(s) - 1))
            w = self.new(
                f"{self.pick(REDUCE)}({v}, axis={ax}, keepdims=true)",
                s[:ax] + ("1",) + s[ax + 1 :],
                d,
            )
            dw = d
        op = self.pick(BINARY)
        if op.count("{}") == 3:
            expr = op.format(v, w, w)
        else:
            expr = op.format(*((v, w) if self.draw(st.booleans()) else (w, v)))
        return self.new(expr, s, d | dw)

    def reduce(self):
        v = self.any_val(lambda s: len(s) >= 1)
        if v is None:
            return self.unary()
        s, d = self.vals[v]
        op = self.pick(REDUCE)
        form = self.pick(["all", "axis", "keepdims"])
        if form == "all":
            return self.new(f"{op}({v})", (), d)
        ax = self.draw(st.integers(0, len(s) - 1))
        if form == "axis":
            return self.new(f"{op}({v}, axis={ax})", s[:ax] + s[ax + 1 :], d)
        return self.new(f"{op}({v}, axis={ax}, keepdims=true)", s[:ax] + ("1",) + s[ax + 1 :], d)

    def matmul(self):
        v = self.any_val(lambda s: len(s) >= 1 and s[-1] in ("3", "4"))
        if v is None:
            return self.unary()
        s, d = self.vals[v]
        if s[-1] == "3":
            w, out = self.shared("W"), "4"
        else:
            w, out = self.shared(self.pick(["V", "U"])), None
            out = "3" if w == "V" else "4"
        return self.new(f"{v} @ {w}", s[:-1] + (out,), d | {w})

    def transpose(self):
        v = self.any_val(lambda s: len(s) == 2)
        if v is None:
            return self.unary()
        s, d = self.vals[v]
        return self.new(f"transpose({v})", (s[1], s[0]), d)

    def index(self):
        v = self.any_val(lambda s: len(s) >= 1)
        if v is None:
            return self.unary()
        s, d = self.vals[v]
        form = self.pick(
            ["first", "last", "slice", "col"] if len(s) >= 2 else ["first", "last", "slice"]
        )
        if form == "first":
            return self.new(f"{v}[0]", s[1:], d)
        if form == "last":
            return self.new(f"{v}[-1]", s[1:], d)
        if form == "slice":
            return self.new(f"{v}[1:]", (f"({s[0]})-1",) + s[1:], d)
        k = self.draw(st.integers(0, 2)) if s[1] in ("3", "4") else 0
        if s[1] not in ("3", "4"):
            return self.new(f"{v}[:, 0]", s[:1] + s[2:], d)
        return self.new(f"{v}[:, {k}]", s[:1] + s[2:], d)

    def reshape(self):
        v = self.any_val(lambda s: len(s) == 2 and all(x in PLAIN for x in s))
        if v is None:
            return self.unary()
        s, d = self.vals[v]
        flat = self.new(f"reshape({v}, [{s[0]} * {s[1]}])", (f"{s[0]}*{s[1]}",), d)
        if self.draw(st.booleans()):
            return self.new(f"reshape({flat}, [{s[0]}, {s[1]}])", s, d)
        return flat

    def conv(self):
        self.args["img"] = "f32[N, 2, H, Q]"
        self.shared("F")
        pad = self.pick(['"same"', '"valid"'])
        c = self.new(
            f"relu(conv2d(img, F, padding={pad}))",
            ("N", "3", "H'", "W'") if pad == '"valid"' else ("N", "3", "H", "W"),
            {"F"},
        )
        p = self.new(f"max_pool2d({c}, [2, 2])", ("N", "3", "Hp", "Wp"), {"F"})
        return self.new(f"mean(mean({p}, axis=3), axis=2)", ("N", "3"), {"F"})

    def scan(self):
        self.args["xs"] = "f32[T, N, 3]"
        two_seqs = self.draw(st.booleans())
        two_carries = self.draw(st.booleans())
        seqs = "x in xs" + (", m in ms" if two_seqs else "")
        if two_seqs:
            self.args["ms"] = "f32[T, N, 1]"
        h0 = self.any_val(lambda s: s == ("N", "4"))
        if h0 is None:
            h0 = self.new("tanh(x @ W)", ("N", "4"), {"W"})
        carries = f"h = {h0}" + (", c = zeros([N, 4])" if two_carries else "")
        for s in ("W", "U"):
            self.shared(s)
        body = ["        hn = tanh(x @ W + h @ U)"]
        if two_seqs:
            body.append("        hn = m * hn + (1.0 - m) * h")
        if two_carries:
            body.append("        c = c + hn")
            body.append("        h = hn * 0.5 + c * 0.25")
        else:
            body.append("        h = hn")
        ys = self.pick(["h", "h @ V"])
        if ys == "h @ V":
            self.shared("V")
        body.append(f"        yield h, {ys}")
        self.n += 1
        hs, os_ = f"hs{self.n}", f"os{self.n}"
        deps = self.vals[h0][1] | {"W", "U"} | ({"V"} if ys == "h @ V" else set())
        self.lines.append(f"    {hs}, {os_} = scan ({seqs}; {carries}) {{")
        self.lines += body
        self.lines.append("    }")
        self.vals[hs] = (("T", "N", "4"), frozenset(deps))
        self.vals[os_] = (("T", "N", "3" if ys == "h @ V" else "4"), frozenset(deps))
        return self.new(f"{hs}[-1]", ("N", "4"), deps)

    def grad(self):
        v = self.any_val(lambda s: True)
        s, d = self.vals[v]
        wrt = sorted(set(d) - set(self.grads))
        if not wrt:
            return None
        wrt = wrt[: self.draw(st.integers(1, len(wrt)))]
        loss = self.new(f"{self.pick(['sum', 'mean'])}({v} * {v})" if s else f"{v} * {v}", (), d)
        names = [f"g{w}" for w in wrt]
        self.lines.append(f"    {', '.join(names)} = grad({loss}, {', '.join(wrt)})")
        for w, g in zip(wrt, names):
            self.grads[w] = g
            self.vals[g] = (_shared_shape(w), frozenset(d))
        return names[0]

    # -- the program -------------------------------------------------------------------------
    def program(self) -> str:
        draw = self.draw
        self.vals["x"] = (("N", "3"), frozenset())
        features = draw(
            st.lists(st.sampled_from(["conv", "scan", "matmul", "grad"]), max_size=3, unique=True)
        )
        if "conv" in features:
            self.conv()
        if "scan" in features:
            self.scan()
        if "matmul" in features or draw(st.booleans()):
            self.matmul()
        steps = [
            self.unary,
            self.binary,
            self.reduce,
            self.matmul,
            self.transpose,
            self.index,
            self.reshape,
        ]
        for _ in range(draw(st.integers(1, 6))):
            self.pick(steps)()
        if "grad" in features or draw(st.booleans()):
            self.grad()
        for w, g in sorted(self.grads.items()):
            if draw(st.booleans()):
                self.lines.append(f"    {w} <- {w} - 0.1 * {g}")
                self.updated.add(w)
        if "b" in self.used_shared and "b" not in self.updated and draw(st.booleans()):
            v = self.any_val(lambda s: s == ("N", "4"))
            if v is not None:
                self.lines.append(f"    b <- b * 0.9 + mean({v}, axis=0)")
        # results: plain-shaped values as they are, the others summed
        names = [k for k in self.vals if k != "x" and not k.startswith(("hs", "os"))]
        outs = names[-3:] + [g for g in self.grads.values() if g not in names[-3:]]
        res, types = [], []
        for k in outs:
            s = self.vals[k][0]
            if all(x in PLAIN for x in s):
                res.append(k)
                types.append(f"f32[{', '.join(s)}]" if s else "f32")
            else:
                res.append(f"sum({k})")
                types.append("f32")
        head = [
            f"shared {k}: {t} = {init}" for k, (t, init) in SHARED.items() if k in self.used_shared
        ]
        args = ", ".join(f"{k}: {t}" for k, t in self.args.items())
        rt = types[0] if len(types) == 1 else f"({', '.join(types)})"
        return "\n".join(
            head
            + [f"fn f({args}) -> {rt} {{"]
            + self.lines
            + [f"    return {', '.join(res)}", "}", ""]
        )


def _shared_shape(w):
    t = SHARED[w][0]
    return tuple(x.strip() for x in t[4:-1].split(","))


@st.composite
def programs(draw) -> str:
    """The text of a random well-typed .tg program with entry function `f`."""
    return Gen(draw).program()
