"""The IR core: types, ops, blocks, regions, modules, builder, rewriter,
printer, parser and verifier. Imports nothing else of the project."""

from irc.ir.core import Block, BlockArgument, Loc, Module, Op, OpResult, Region, SymbolRef, Value
from irc.ir.types import BOOL, DTYPES, F32, F64, I32, I64, DType, TensorType, TypeError_
from irc.ir.builder import Builder
from irc.ir.rewriter import Rewriter

__all__ = [
    "Block",
    "BlockArgument",
    "Loc",
    "Module",
    "Op",
    "OpResult",
    "Region",
    "SymbolRef",
    "Value",
    "BOOL",
    "DTYPES",
    "F32",
    "F64",
    "I32",
    "I64",
    "DType",
    "TensorType",
    "TypeError_",
    "Builder",
    "Rewriter",
]
