"""Small data shipped with irc for the examples (see DATA.md): the 8x8 digits
(digits.npz) and seeded generators for the sequence tasks (sequences.py).
Nothing is downloaded at run time. Imports nothing of the project."""

from __future__ import annotations

import os

import numpy as np

DIGITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")


def load_digits() -> dict:
    """{x_train f32[1497, 64], y_train i32[1497], x_test f32[300, 64], y_test i32[300]};
    pixels scaled to [0, 1]."""
    with np.load(DIGITS, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}
