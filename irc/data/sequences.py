"""Seeded generators for the sequence examples: the embedded Reber grammar
(examples/rnn.tg) and a noisy 1-D signal with a hidden pattern
(examples/conv1d.tg). Pure NumPy; imports nothing of the project.

Embedded Reber grammar (Fahlman's benchmark, Hochreiter & Schmidhuber 1997):
a string is B, then T or P, then a Reber string (B ... E), then the same T or
P again, then E. The Reber automaton (every state's two edges carry
different symbols, so the state follows from the symbols read):

    state 0 --T--> 1   0 --P--> 2
    state 1 --S--> 1   1 --X--> 3
    state 2 --T--> 2   2 --V--> 4
    state 3 --X--> 2   3 --S--> 5
    state 4 --P--> 3   4 --V--> 5
    state 5 --E--> end

Each edge is taken with probability 1/2. Only the second-last symbol needs
memory: it must repeat the second symbol, 8 to 20 steps earlier.

Next-symbol prediction, time-major as the .tg models want them:
  xs    f32[T, N, 7]  one-hot input symbols s_0 .. s_{L-2}, zero after the string
  ys    i32[T, N]     targets s_1 .. s_{L-1}, 0 (unused) after the string
  mask  f32[T, N]     1 on the L-1 real steps, 0 on padding
  legal bool[T, N, 7] the symbols the grammar allows after s_0 .. s_t
Strings longer than T + 1 symbols (about 3% of them at T = 20) are redrawn.
"""

from __future__ import annotations

import numpy as np

SYMBOLS = "BTPSXVE"
INDEX = {c: i for i, c in enumerate(SYMBOLS)}
D = len(SYMBOLS)

# state -> ((symbol, next state), (symbol, next state)); state 5 only emits E.
REBER = {
    0: (("T", 1), ("P", 2)),
    1: (("S", 1), ("X", 3)),
    2: (("T", 2), ("V", 4)),
    3: (("X", 2), ("S", 5)),
    4: (("P", 3), ("V", 5)),
}


def reber_string(rng: np.random.Generator) -> str:
    s, state = "B", 0
    while state != 5:
        c, state = REBER[state][rng.integers(2)]
        s += c
    return s + "E"


def embedded_reber_string(rng: np.random.Generator) -> str:
    branch = "TP"[rng.integers(2)]
    return "B" + branch + reber_string(rng) + branch + "E"


def legal_next(s: str) -> list:
    """For each prefix s[:t+1] (t = 0 .. len(s)-2), the set of symbols the
    embedded grammar allows next. Raises ValueError if s is not in the grammar."""
    out = []
    # phases: 0 after outer B; 1 after the branch; 2 inside the Reber string
    # (state = automaton state); 3 after the inner E; 4 after the closing branch.
    phase, state, branch = 0, None, None
    for t, c in enumerate(s[:-1]):
        if t == 0:
            if c != "B":
                raise ValueError(f"{s!r}: must start with B")
            out.append({"T", "P"})
            continue
        if phase == 0:
            if c not in "TP":
                raise ValueError(f"{s!r}: symbol {t} must be T or P")
            branch, phase = c, 1
            out.append({"B"})
        elif phase == 1:
            if c != "B":
                raise ValueError(f"{s!r}: symbol {t} must be B")
            phase, state = 2, 0
            out.append({sym for sym, _ in REBER[0]})
        elif phase == 2:
            if state == 5:
                if c != "E":
                    raise ValueError(f"{s!r}: symbol {t} must be E")
                phase = 3
                out.append({branch})
                continue
            nxt = dict(REBER[state])
            if c not in nxt:
                raise ValueError(f"{s!r}: symbol {t} ({c}) is not allowed here")
            state = nxt[c]
            out.append({"E"} if state == 5 else {sym for sym, _ in REBER[state]})
        elif phase == 3:
            if c != branch:
                raise ValueError(f"{s!r}: symbol {t} must repeat the branch {branch}")
            phase = 4
            out.append({"E"})
        else:
            raise ValueError(f"{s!r}: too long")
    if phase != 4 or s[-1] != "E":
        raise ValueError(f"{s!r}: incomplete")
    return out


def reber_batch(n: int, T: int = 20, seed: int = 0) -> dict:
    """n embedded Reber strings of at most T + 1 symbols, as time-major arrays
    (see the module docstring), plus `strings` (a list of str)."""
    rng = np.random.default_rng(seed)
    xs = np.zeros((T, n, D), np.float32)
    ys = np.zeros((T, n), np.int32)
    mask = np.zeros((T, n), np.float32)
    legal = np.zeros((T, n, D), bool)
    strings = []
    for j in range(n):
        s = embedded_reber_string(rng)
        while len(s) > T + 1:
            s = embedded_reber_string(rng)
        strings.append(s)
        for t, allowed in enumerate(legal_next(s)):
            xs[t, j, INDEX[s[t]]] = 1.0
            ys[t, j] = INDEX[s[t + 1]]
            mask[t, j] = 1.0
            for c in allowed:
                legal[t, j, INDEX[c]] = True
    return {"xs": xs, "ys": ys, "mask": mask, "legal": legal, "strings": strings}


def reber_accuracy(probs: np.ndarray, legal: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of strings whose every predicted next symbol (the argmax of
    probs [T, N, D] on the real steps) is one the grammar allows there."""
    pred = np.argmax(probs, axis=-1)  # [T, N]
    ok = np.take_along_axis(legal, pred[..., None], axis=-1)[..., 0]
    ok = ok | (mask == 0)
    return float(np.mean(np.all(ok, axis=0)))


# -- the conv1d task --------------------------------------------------------------------------

PATTERN = np.array([1.0, -1.0, 1.0], np.float32)
# Decoys have the same energy as the pattern, so only its shape tells them apart.
DECOYS = np.array(
    [[-1.0, 1.0, -1.0], [1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]],
    np.float32,
)


def signal_batch(
    n: int, length: int = 32, amplitude: float = 1.5, noise: float = 0.35, seed: int = 0
) -> dict:
    """n noisy signals x f32[n, length] and labels y i32[n]: 1 when the
    pattern (+1, -1, +1) * amplitude was added at a random position, 0 when a
    decoy of the same energy was (half of each, shuffled)."""
    rng = np.random.default_rng(seed)
    x = (noise * rng.standard_normal((n, length))).astype(np.float32)
    y = (rng.permutation(n) % 2).astype(np.int32)
    pos = rng.integers(0, length - len(PATTERN) + 1, n)
    decoy = DECOYS[rng.integers(0, len(DECOYS), n)]
    for i in range(n):
        shape = PATTERN if y[i] == 1 else decoy[i]
        x[i, pos[i] : pos[i] + len(PATTERN)] += amplitude * shape
    return {"x": x, "y": y}
