"""inline: replace every func.call of a private function (an instantiated
`def`) by a copy of its body, then drop the private functions nothing calls.

    func.func private @probs(%x: f32[N, 64]) -> (f32[N, 10]) {      func.func @predict(%x: f32[N, 64]) -> (i32[N]) {
      %p = tg.softmax %x ...                                          %p = tg.softmax %x ...
      func.return %p : f32[N, 10]                         ->          %a = tg.argmax %p ...
    }                                                                  func.return %a : i32[N]
    func.func @predict(%x: f32[N, 64]) -> (i32[N]) {                 }
      %p = func.call %x {callee = @probs} : f32[N, 10]
      %a = tg.argmax %p ...
      func.return %a : i32[N]
    }

Inlined ops keep their own locations (the def's lines), so an error in a
later pass still points at the line inside the def. Calls inside the inlined
body are inlined in turn (a def calling a def). Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from irc.ir.core import Module, Op
from irc.ir.errors import CompileError
from irc.passes.pass_manager import Pass, register


@register
@dataclass
class Inline(Pass):
    name = "inline"
    summary = "inline calls of private functions (defs) and drop them"

    def run(self, module: Module) -> bool:
        symbols = module.symbols()
        changed = False
        for func in [op for op in module.body.ops if op.name == "func.func"]:
            changed |= self._inline_in(func, symbols, depth=0)
        for op in list(module.body.ops):
            if op.name == "func.func" and op.attrs.get("visibility") == "private":
                name = op.attrs["sym_name"]
                if not any(
                    o.name == "func.call" and o.attrs["callee"].name == name
                    for f in module.body.ops
                    for o in f.walk()
                ):
                    op.drop_all_references()
                    module.body.remove(op)
                    changed = True
        return changed

    def _inline_in(self, func: Op, symbols: dict, depth: int) -> bool:
        changed = False
        while True:
            calls = [op for op in func.walk() if op.name == "func.call"]
            calls = [
                c
                for c in calls
                if symbols.get(c.attrs["callee"].name) is not None
                and symbols[c.attrs["callee"].name].attrs.get("visibility") == "private"
            ]
            if not calls:
                return changed
            depth += 1
            if depth > 1000:
                raise CompileError(
                    "inlining does not terminate (recursive functions?)", calls[0].loc
                )
            for call in calls:
                self._inline_call(call, symbols[call.attrs["callee"].name])
            changed = True

    @staticmethod
    def _inline_call(call: Op, callee: Op) -> None:
        body = callee.regions[0].block
        mapping = {arg: v for arg, v in zip(body.args, call.operands)}
        block = call.parent
        for op in body.ops:
            if op.name == "func.return":
                for r, v in zip(call.results, op.operands):
                    r.replace_all_uses_with(mapping.get(v, v))
                break
            block.insert_before(call, op.clone(mapping))
        call.erase()
