"""The fast parser's tokenizer (irc/frontend/fastparse.py), which reads the text
line by line: tokens, their lines and columns, the end marker's position, and
the characters that make the text fall back to Lark."""

from __future__ import annotations

import pytest

from irc.frontend.fastparse import Fallback, tokenize


def toks(text):
    kinds, values, lines, cols = tokenize(text)
    return list(zip(kinds, values, lines, cols))


def test_tokens_lines_and_columns():
    text = "fn f(x: f32[N]) -> f32 {  # a comment\n\ty = x ** 2.5e-1 // 3\r\n  return y\n}\n"
    assert toks(text) == [
        ("NAME", "fn", 1, 1),
        ("NAME", "f", 1, 4),
        ("(", "(", 1, 5),
        ("NAME", "x", 1, 6),
        (":", ":", 1, 7),
        ("NAME", "f32", 1, 9),
        ("[", "[", 1, 12),
        ("NAME", "N", 1, 13),
        ("]", "]", 1, 14),
        (")", ")", 1, 15),
        ("->", "->", 1, 17),
        ("NAME", "f32", 1, 20),
        ("{", "{", 1, 24),
        ("NAME", "y", 2, 2),
        ("=", "=", 2, 4),
        ("NAME", "x", 2, 6),
        ("**", "**", 2, 8),
        ("FLOAT", "2.5e-1", 2, 11),
        ("//", "//", 2, 18),
        ("INT", "3", 2, 21),
        ("NAME", "return", 3, 3),
        ("NAME", "y", 3, 10),
        ("}", "}", 4, 1),
        ("$END", "", 5, 1),
    ]


@pytest.mark.parametrize(
    "text, end",
    [("", (1, 1)), ("a", (1, 2)), ("a  \t", (1, 5)), ("a\n  ", (2, 3)), ("#c\n\n", (3, 1))],
)
def test_end_marker_after_the_last_character(text, end):
    assert toks(text)[-1] == ("$END", "", *end)


def test_operators_longest_first_and_numbers():
    text = '... ** // -> <- == != <= >= < > 1. .5 1e3 12 "s" x_1'
    kinds, values, _, _ = tokenize(text)
    assert values[:-1] == text.split()
    assert kinds[:-1] == [
        "...", "**", "//", "->", "<-", "==", "!=", "<=", ">=", "<", ">",
        "FLOAT", "FLOAT", "FLOAT", "INT", "STRING", "NAME",
    ]  # fmt: skip


@pytest.mark.parametrize("text", ["a $ b", '"open', "é", 'x = "a\\b"', "a\vb", "a ! b", "'s'"])
def test_other_characters_fall_back(text):
    with pytest.raises(Fallback):
        tokenize(text)


def test_whitespace_only_lines_and_trailing_whitespace():
    assert toks("  \n \t\f\r\n x \r\n") == [("NAME", "x", 3, 2), ("$END", "", 4, 1)]
