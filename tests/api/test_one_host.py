"""The Python API and the `.tg` front end share one host: the Python functions are
generated from the table of built-ins (irc/frontend/builtins.py), so their signatures
and argument checks are the `.tg` built-ins'; a Python variable is a handle on a value
of the traced tg IR, and clone, pp and debugprint read that IR.
"""

import inspect
from pathlib import Path

import numpy as np
import pytest

import irc
from irc.frontend.builtins import BUILTINS, REQUIRED
from irc.ir.core import Op, Value


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_python_builtins_have_the_tables_signature(name):
    params, _ = BUILTINS[name]
    fn = getattr(irc, name)
    got = [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]
    want = [(p, inspect.Parameter.empty if d is REQUIRED else d) for p, d in params]
    assert got == want
    assert name in irc.__all__ and name in dir(irc)


@pytest.mark.parametrize(
    "tg_call, py_call, message",
    [
        ("conv2d(x, w, stride=[1, 2, 3])", lambda x, w: irc.conv2d(x, w, stride=[1, 2, 3]),
         "conv2d(): 'stride' must have 2 items"),
        ("max_pool2d(x, size=\"a\")", lambda x, w: irc.max_pool2d(x, size="a"),
         "max_pool2d(): 'size' must be an integer or a list of integers, got the string 'a'"),
        ("conv2d(x, w, padding=\"wide\")", lambda x, w: irc.conv2d(x, w, padding="wide"),
         "conv2d(): 'padding' must be one of 'valid', 'same', 'full'"),
        ("softmax(x, axis=1.5)", lambda x, w: irc.softmax(x, axis=1.5),
         "softmax(): 'axis' must be an integer known at compile time, got the number 1.5"),
    ],
)  # fmt: skip
def test_one_check_serves_both_front_ends(tmp_path, tg_call, py_call, message):
    src = tmp_path / "m.tg"
    src.write_text(
        f"fn f(x: f32[1, 1, 8, 8], w: f32[2, 1, 3, 3]) -> (f32[1, 2, 6, 6]) {{\n"
        f"    return {tg_call}\n}}\n"
    )
    with pytest.raises(irc.CompileError) as tg_err:
        irc.load(str(src), backend="interp")
    assert message in tg_err.value.message and tg_err.value.loc.line == 2
    x = irc.tensor("x", "float32", (1, 1, 8, 8))
    w = irc.tensor("w", "float32", (2, 1, 3, 3))
    with pytest.raises(irc.CompileError) as py_err:
        py_call(x, w)
    assert message in py_err.value.message and py_err.value.loc.file == __file__


def test_errors_point_at_the_users_line():
    x = irc.matrix("x", dims=("N", 4))
    with pytest.raises(irc.CompileError) as e:
        irc.conv2d(x, x, stride="a")  # the line reported
    assert e.value.loc.file == __file__
    line = Path(__file__).read_text().splitlines()[e.value.loc.line - 1]
    assert "irc.conv2d(x, x, stride" in line


def test_a_variable_is_a_handle_on_a_traced_ir_value():
    x = irc.matrix("x", dims=("N", 4))
    W = irc.shared(np.ones((4, 3), np.float32), name="W")
    y = irc.tanh(x @ W)
    assert isinstance(y.value, Value) and isinstance(y.owner, Op)
    assert y.owner.name == "tg.tanh" and y.owner.parent is None  # detached, as in a jaxpr
    (h,) = y.owner.operands
    assert h.op.name == "tg.matmul" and h.op.operands == [x.value, W.value]
    assert y.owner.inputs[0].owner is h.op  # a handle for the value nobody held
    # one handle per value while someone holds it
    s = x.sum()
    assert irc.clone(y.sum() + s, replace={W: W * 2}).owner.inputs[1] is s
    z = irc.clone(y, replace={x: x + 1})
    assert z.owner.operands[0].op.operands[0].op.name == "tg.add"


def test_scan_body_is_the_region_of_its_traced_op():
    xs = irc.matrix("xs", dims=("T", 3))
    h0 = irc.vector("h0", dims=(3,))
    hs, _ = irc.scan(lambda x, h: irc.tanh(x + h), sequences=[xs], outputs_info=[h0])
    scan = hs.owner
    assert scan.name == "tg.scan"
    body = scan.regions[0].blocks[0]
    assert [a.type.shape for a in body.args] == [(3,), (3,)]
    assert body.ops[-1].name == "tg.yield" and body.ops[-1].operands[0].op.name == "tg.tanh"
    assert irc.pp(hs) == "scan(steps=T, sequences=[xs], carries=[h0])[0]"
    text = irc.debugprint(hs, file="str")
    assert "tg.scan" in text and "tg.yield" in text


def test_a_graph_nobody_holds_is_freed_at_once():
    """Traced ops hold their results weakly and leaves point at no op: without the
    cycle collector, dropping the last variable of a graph frees it, and the names of
    its unknown dims with it."""
    import gc

    from irc.symbolic import variables

    enabled = gc.isenabled()
    gc.disable()
    try:
        x = irc.matrix("freed")
        W = irc.shared(np.ones((4, 3), np.float32))
        y = irc.tanh(x @ W).sum() + 1
        assert str(x.type) == "f32[freed_0, 4]"
        del x
        assert "freed_0" in variables._UNIFIER.unknown  # y still reads x
        del y
        assert "freed_0" not in variables._UNIFIER.unknown
    finally:
        if enabled:
            gc.enable()
