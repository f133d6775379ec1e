"""The constructs of the `.tg` generator that generate other bodies: grad, the
instantiation of a `def` (a private func.func per distinct tuple of argument types,
its named dims unified with the caller's, called with func.call) and scan (its body
generated into the tg.scan region, in a child scope). A mixin of IRGen
(irc/frontend/irgen.py), which has the rest of the generator.
Imports irc.ir, irc.ops and irc.frontend only.
"""

from __future__ import annotations

from irc.frontend import ast as A
from irc.frontend.host import scan_attrs, scan_result_types
from irc.frontend.values import FuncScope, describe, type_text
from irc.ir import dims as D
from irc.ir.core import Block, Region, SymbolRef, Value
from irc.ir.types import DTYPES, TensorType


class NestedGen:
    """grad, def calls and scan for IRGen."""

    def grad(self, n: A.Call):
        if self.ctx is None:
            raise self.err("grad cannot be used in a const", n.loc)
        if len(n.args) < 2:
            raise self.err("grad(loss, x, ...) needs a loss and at least one variable", n.loc)
        disconnected = "raise"
        for k, v, kloc in n.kwargs:
            if k != "disconnected":
                raise self.err(f"unknown argument '{k}' of grad", kloc)
            disconnected = self.ev_static(v)
            if disconnected not in ("raise", "zero"):
                raise self.err('disconnected must be "raise" or "zero"', v.loc)
        loss = self.ev(n.args[0])
        if not isinstance(loss, Value):
            raise self.err(
                f"grad: the loss must be a tensor expression, got {describe(loss)}", n.args[0].loc
            )
        wrt = []
        for a in n.args[1:]:
            v = self.ev(a)
            if not isinstance(v, Value):
                raise self.err(f"grad: cannot differentiate with respect to {describe(v)}", a.loc)
            wrt.append(v)
        with self.b.at_loc(n.loc):
            op = self.b.op_full("tg.grad", [loss] + wrt, {"disconnected": disconnected})
        res = op.results
        for r, w in zip(res, wrt):
            r.name_hint = "g" + (w.name_hint or "")
        return res[0] if len(res) == 1 else tuple(res)

    # -- def instantiation ----------------------------------------------------------
    def call_def(self, n: A.Call):
        decl = self.defs[n.func]
        if n.kwargs:
            names = [p.name for p in decl.params]
            args = list(n.args) + [None] * (len(names) - len(n.args))
            for k, v, kloc in n.kwargs:
                if k not in names:
                    raise self.err(f"'{decl.name}' has no argument '{k}'", kloc)
                i = names.index(k)
                if args[i] is not None:
                    raise self.err(f"argument '{k}' given twice", kloc)
                args[i] = v
        else:
            args = list(n.args)
        if len(args) != len(decl.params):
            raise self.err(
                f"'{decl.name}' takes {len(decl.params)} argument(s), got {len(args)}", n.loc
            )
        for p, a in zip(decl.params, args):
            if a is None and p.default is None:
                raise self.err(f"missing argument '{p.name}' of '{decl.name}'", n.loc)
        values = []
        for p, a in zip(decl.params, args):
            node = a if a is not None else p.default
            values.append((self.ev(node), node.loc))
        # Unify the def's dims with the actual argument types.
        dim_map: dict = {}
        actual = []
        for p, (v, loc) in zip(decl.params, values):
            want_dtype = DTYPES[p.type.dtype]
            t = self.as_tensor(v, loc, dtype=want_dtype)
            if t.type.dtype != want_dtype:
                raise self.err(
                    f"argument '{p.name}' of '{decl.name}' expects {p.type.dtype}, got {t.type}",
                    loc,
                )
            self._unify(decl, p, t.type, dim_map, loc)
            actual.append(t)
        # Checked before the instance cache: a def being instantiated is already
        # in it, without its result types yet.
        if decl.name in self.instantiating:
            chain = self.instantiating[self.instantiating.index(decl.name) :] + [decl.name]
            raise self.err(
                f"'{decl.name}' calls itself ({' -> '.join(chain)}); recursion is not supported",
                n.loc,
                "a def is inlined at each call; use scan for repetition",
            )
        key = (decl.name, tuple(a.type for a in actual))
        func = self.instances.get(key)
        if func is None:
            idx = sum(1 for k in self.instances if k[0] == decl.name)
            name = decl.name if idx == 0 else f"{decl.name}_{idx}"
            func = self._new_func(name, decl, [a.type for a in actual], "private")
            # Instances go before the entry functions that call them.
            first_fn = next(
                (i for i, o in enumerate(self.module.body.ops) if o.name == "func.func"), None
            )
            if first_fn is None:
                self.module.body.append(func)
            else:
                self.module.body.insert(first_fn, func)
            self.instances[key] = func
            named = set(self.ctx.named_dims) | {
                x for a in actual for d in a.type.shape for x in D.dim_names(d)
            }
            self.instantiating.append(decl.name)
            saved_depth = self.scan_depth
            self.scan_depth = 0
            try:
                results = self._body(func, decl, named, dim_map)
            finally:
                self.instantiating.pop()
                self.scan_depth = saved_depth
            func.attrs["res_types"] = tuple(v.type for v in results)
        res_types = list(func.attrs["res_types"])
        with self.b.at_loc(n.loc):
            op = self.b.create(
                "func.call", actual, res_types, {"callee": SymbolRef(func.attrs["sym_name"])}
            )
        if not res_types:
            raise self.err(f"'{decl.name}' returns nothing and cannot be used as a value", n.loc)
        return op.results[0] if len(op.results) == 1 else tuple(op.results)

    def _unify(self, decl, p, actual: TensorType, dim_map, loc):
        te = p.type
        want_rank = len(te.dims or [])
        if want_rank != actual.rank:
            raise self.err(
                f"argument '{p.name}' of '{decl.name}' expects rank {want_rank} "
                f"({type_text(te)}), got {actual}",
                loc,
            )
        for de, d in zip(te.dims or [], actual.shape):
            if de.op == "name" and de.args[0] not in self.consts:
                n = de.args[0]
                if n in dim_map and dim_map[n] != d:
                    raise self.err(
                        f"argument '{p.name}' of '{decl.name}': dimension {n} is {dim_map[n]} "
                        f"elsewhere but {d} here ({actual})",
                        loc,
                    )
                dim_map[n] = d
            else:
                want = self.resolve_dim(de, dim_map)
                if want != d:
                    raise self.err(
                        f"argument '{p.name}' of '{decl.name}' expects {type_text(te)}, got {actual}",
                        loc,
                    )

    # -- scan -----------------------------------------------------------------------
    def ev_Scan(self, n: A.Scan):
        if self.ctx is None:
            raise self.err("scan cannot be used in a const", n.loc)
        seqs = []
        for name, node, loc in n.seqs:
            v = self.ev(node)
            if not isinstance(v, Value):
                v = self.as_tensor(v, loc)
            if v.type.rank == 0:
                raise self.err(
                    f"sequence '{name}' is a scalar; scan iterates over a leading axis", node.loc
                )
            seqs.append((name, v, loc))
        inits = []
        for name, node, loc in n.carries:
            v = self.as_tensor(self.ev(node), node.loc)
            inits.append((name, v, loc))
        names = [s[0] for s in seqs] + [c[0] for c in inits]
        for i, nm in enumerate(names):
            if nm in names[:i]:
                raise self.err(f"'{nm}' is bound twice in this scan", n.loc)
        steps = None
        if "steps" in n.options:
            node = n.options["steps"]
            steps = (self.ev_static(node), node.loc)
        length = self.host.scan_length(
            [(f"'{name}'", v, loc) for name, v, loc in seqs],
            steps,
            n.loc,
            ("", "steps", "a scan without sequences needs 'steps = n'"),
        )
        truncate = None
        if "truncate" in n.options:
            node = n.options["truncate"]
            truncate = self.ev_static(node)
            if not isinstance(truncate, int) or isinstance(truncate, bool) or truncate < 1:
                raise self.err("truncate must be a positive integer", node.loc)
        arg_types = [v.type.with_shape(v.type.shape[1:]) for _, v, _ in seqs] + [
            v.type for _, v, _ in inits
        ]
        block = Block(arg_types, names)
        # Generate the body in a child scope; outer names stay visible.
        saved = (self.scope, self.b.block, self.b.pos)
        self.scope = FuncScope(saved[0])
        for nm, a in zip(names, block.args):
            self.scope.vars[nm] = a
            self._note_int_scalar(a)
        self.b.set_insertion_end(block)
        self.scan_depth += 1
        try:
            res = self._stmts(n.body, allow_yield=True)
            if res is None:
                raise self.err("a scan body must end with 'yield'", n.loc)
            outs, yloc = res
            nexts = []
            for nm, init, loc in inits:
                nv = self.scope.vars[nm]
                nv = self.as_tensor(nv, loc, dtype=init.type.dtype)
                if nv.type != init.type:
                    raise self.err(
                        f"carried value '{nm}' starts as {init.type} but its next value is {nv.type}",
                        self._rebind_loc(n.body, nm) or loc,
                        "the next value must have the type of the initial value",
                    )
                nexts.append(nv)
            out_vals = [self.as_tensor(v, yloc) for v in outs]
            self.b.create("tg.yield", nexts + out_vals, [], {}, loc=yloc)
        finally:
            self.scan_depth -= 1
            self.scope, self.b.block, self.b.pos = saved
        res_types = scan_result_types(
            [v.type for _, v, _ in inits], [v.type for v in out_vals], length
        )
        attrs = scan_attrs(len(seqs), len(inits), length, truncate)
        with self.b.at_loc(n.loc):
            op = self.b.create(
                "tg.scan",
                [v for _, v, _ in seqs] + [v for _, v, _ in inits],
                res_types,
                attrs,
                [Region([block])],
            )
        outs = op.results[len(inits) :]
        if not outs:
            return ()
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _rebind_loc(self, body, name):
        loc = None
        for st in body:
            if isinstance(st, A.Assign) and name in st.targets:
                loc = st.loc
        return loc
