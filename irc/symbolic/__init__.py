"""The Theano-style Python API: symbolic variables, shared variables, grad,
scan, clone and function (with updates and givens). It builds the same tg IR
as the `.tg` front end, so passes, backends and dumps are shared.

    x = irc.matrix("x", dims=("N", 64))
    y = irc.vector("y", dtype="int32", dims=("N",))
    W = irc.shared(np.zeros((64, 10), np.float32), name="W")
    b = irc.shared(np.zeros(10, np.float32), name="b")
    loss = irc.categorical_crossentropy(irc.softmax(x @ W + b), y).mean()
    gW, gb = irc.grad(loss, [W, b])
    train = irc.function([x, y], loss, updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)])

How it works
------------
Expressions are traced into the tg IR, as JAX traces into a jaxpr: a
`Variable` is a thin handle on a Value of that IR. Each op the user applies
becomes a detached irc.ir Op (`Apply`: in no block, with its creation order
and the scan body it was traced in); inputs, shared variables and named-dim
values are leaf values, defined by no op; a scan's step function is
traced into the body block of its tg.scan, whose step arguments are that
block's arguments. Types and shapes are inferred when an op is traced, through
the op registry, so a shape error is raised at once as a CompileError located
at the user's line: every op records the file, line and column of the Python
expression that created it (frames of the irc package are skipped). The
built-in functions, operators, indexing and their checks are the `.tg` front
end's (irc/frontend/builtins.py, host.py, indexing.py), run on Variables.

Inputs made without dims= have unknown dims (irc/ir/dims.py, Unifier): the
type rules compare dims with same_dim while _apply infers types, which binds
unknowns instead of failing (`x @ W` makes x's columns W's rows); Variables
and Dims resolve their types through the bindings lazily. A failed op binds
nothing (rollback); `function` binds the dims of givens for itself only. An
unknown's name is reused once nothing mentions it (its owner, the input's
leaf value, is held weakly; a traced op holds its results weakly and
registers no uses on its operands, so a graph nobody holds is freed at once
by reference counting; a scan's body, a block, waits for the cycle collector).

`function(...)` copies the traced ops the outputs and updates need into one
module: a tg.global per shared variable used (init = "value": the backend
starts from the variable's current value), one public func.func with the
inputs as arguments, tg.read and tg.dim at its entry, the ops in creation
order (the order in which the `.tg` front end emits the same program), with
the unknown dims bound so far resolved, tg.update before func.return. Then
irc.pipeline.run_pipeline and a backend from irc.api._make_backend. A value
traced inside a scan's step function belongs to its body; using one outside
is an error. `clone(replace=)` rebuilds the traced ops that depend on a
replaced value (sharing the others); `pp` reads the traced ops, `debugprint`
prints the module they make.

Python values follow NumPy 2: Python scalars are weak (they take the dtype of
the tensor they meet, irc.frontend.host.weak_dtype), NumPy scalars and
arrays are strong. Floats default to f32 and integers to i32, as in `.tg`.

Shared variables
----------------
A SharedVariable owns its value; compiled functions share it (Theano
semantics: a function sees the updates another one made). A function keeps
its own copy of the state in its backend and syncs lazily around calls, with
a version number per shared variable: before a call it pushes the values
changed elsewhere since its last call (set_value, or an update by another
function); after the call, the updated variables record that this function
holds their newest value. The host copy is fetched only when needed
(get_value, or a call of another function): one copy of the array each
time. A function called repeatedly on its own moves no data.

Pickling (`__reduce__` of Variable, Dim and Function) is irc/pickling.py's.

The package: variables.py (Variable, Dim, Apply, the unknown dims), builders.py
(values as tensors, inputs, shared variables, indexing, grad, the built-ins
generated from irc/frontend/builtins.py), scan.py (scan and clone), compile.py
(the emitter, function, Function), printing.py (pp, debugprint, graph). This file
only gathers their names.

Imports irc.ir, irc.ops and irc.frontend at module level; irc.pipeline, irc.api
and the printer when compiling. Never imported by the layers below irc.api.
"""

import irc.symbolic.variables  # noqa: F401  (first: the other modules import it at their ends)
from irc import SYMBOLIC_API
from irc.frontend.builtins import BUILTINS
from irc.symbolic import builders
from irc.symbolic.builders import (  # noqa: F401
    _HOST,
    In,
    _binop,
    _dim_variable,
    as_variable,
    grad,
    matrix,
    scalar,
    shared,
    tensor,
    tensor3,
    tensor4,
    vector,
)
from irc.symbolic.compile import Function, _Emitter, _graph_inputs, _sym_name, function  # noqa: F401
from irc.symbolic.printing import debugprint, graph, pp  # noqa: F401
from irc.symbolic.scan import _build_scan, _collect_applies, _new_body, clone, scan  # noqa: F401
from irc.symbolic.variables import (  # noqa: F401
    Dim,
    SharedVariable,
    Variable,
    _apply,
    _handle,
    _leaf,
    _make_dim,
    _map_attr,
    _unify_shapes,
    _user_loc,
)

globals().update({name: getattr(builders, name) for name in BUILTINS})  # irc.exp ...

# the one list of names, shared with irc/__init__.py, and the built-ins of the tg language
__all__ = list(SYMBOLIC_API) + list(BUILTINS)
