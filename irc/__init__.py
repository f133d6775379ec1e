"""irc: a tensor-graph compiler (.tg text or a Python builder API -> tg IR -> passes ->
loop IR -> LLVM or OpenCL). See docs and /README.md.

Kept thin on purpose: `import irc` must stay fast (the CLI's start-up time is the
test suite's), so names are resolved lazily through __getattr__. Must not import
anything at module level besides the standard library.
"""

__version__ = "0.1.0"

# The names of the Theano-style Python API (irc/symbolic.py, its __all__).
SYMBOLIC_API = (
    "Variable",
    "SharedVariable",
    "Dim",
    "In",
    "Function",
    "tensor",
    "scalar",
    "vector",
    "matrix",
    "tensor3",
    "tensor4",
    "shared",
    "grad",
    "scan",
    "clone",
    "function",
    "pp",
    "debugprint",
    "graph",
    "neg",
    "abs",
    "exp",
    "log",
    "log1p",
    "sqrt",
    "tanh",
    "sigmoid",
    "relu",
    "softplus",
    "square",
    "sin",
    "cos",
    "sign",
    "maximum",
    "minimum",
    "where",
    "clip",
    "cast",
    "sum",
    "mean",
    "max",
    "min",
    "argmax",
    "argmin",
    "dot",
    "matmul",
    "transpose",
    "reshape",
    "flatten",
    "concat",
    "stack",
    "arange",
    "one_hot",
    "zeros",
    "ones",
    "full",
    "softmax",
    "log_softmax",
    "categorical_crossentropy",
    "conv1d",
    "conv2d",
    "max_pool2d",
)

# name -> module that defines it; imported on first access.
_LAZY = {
    "CompileError": "irc.ir.errors",
    # .tg models (irc/api.py)
    "load": "irc.api",
    "loads": "irc.api",
    "CallError": "irc.api",
    "CompiledModule": "irc.api",
    "verify_grad": "irc.gradcheck",
    "verify": "irc.verify_backends",
    "NanGuardError": "irc.nanguard",
    # the cpu backend's thread count (runtime/llvm/threads.py)
    "set_num_threads": "irc.runtime.llvm.threads",
    "get_num_threads": "irc.runtime.llvm.threads",
    # the Theano-style builder: every name irc.symbolic exports
    **{name: "irc.symbolic" for name in SYMBOLIC_API},
}

__all__ = ["__version__", *_LAZY]


# submodules reachable as attributes after a bare `import irc` (irc.distributed.train)
_SUBMODULES = ("distributed",)


def __getattr__(name):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"irc.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'irc' has no attribute {name!r}")

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
