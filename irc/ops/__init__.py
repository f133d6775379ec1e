"""The op registry and its families. Importing irc.ops registers every op and
its loop lowering (irc/ops/lowering/)."""

from irc.ops import control, elementwise, func, fused, loop, nn, tensor  # noqa: F401  (register ops)
from irc.ops import indexing  # noqa: F401  (after tensor: uses its gradient helpers)
from irc.ops import lowering  # noqa: F401  (after the families: sets each OpDef's lower)
from irc.ops.registry import REGISTRY, OpBuilder, OpDef, get, lookup, verify_op

__all__ = ["REGISTRY", "OpBuilder", "OpDef", "get", "lookup", "verify_op"]
