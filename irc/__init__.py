"""irc: a tensor-graph compiler (.tg text or a Python builder API -> tg IR -> passes ->
loop IR -> LLVM or OpenCL). See docs and /README.md.

Kept thin on purpose: `import irc` must stay fast (the CLI's start-up time is the
test suite's), so names are resolved lazily through __getattr__. Must not import
anything at module level besides the standard library.
"""

__version__ = "0.1.0"

# The names of the Theano-style Python API (irc/symbolic.py, its __all__), besides the
# built-in functions of the tg language (irc/frontend/builtins.py, BUILTINS), which
# irc.symbolic generates and which resolve below on first access.
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


def _builtin_names() -> list:
    from irc.frontend.builtins import BUILTINS

    return list(BUILTINS)


def _is_submodule(name: str) -> bool:
    """Whether irc has a submodule (a .py file or a package folder) of this name."""
    import os

    here = os.path.dirname(__file__)
    return os.path.exists(os.path.join(here, name + ".py")) or os.path.isfile(
        os.path.join(here, name, "__init__.py")
    )


# submodules reachable as attributes after a bare `import irc` (irc.distributed.train)
_SUBMODULES = ("distributed",)


def __getattr__(name):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"irc.{name}")
    if name == "__all__":  # computed on first use: the built-ins come from their table
        value = globals()["__all__"] = ["__version__", *_LAZY, *_builtin_names()]
        return value
    module = _LAZY.get(name)
    if module is None and _is_submodule(name):
        # `from irc import cache` asks for the attribute before importing the
        # submodule: answer at once, without importing the built-ins' table
        raise AttributeError(f"module 'irc' has no attribute {name!r}")
    if module is None and not name.startswith("_") and name in _builtin_names():
        module = "irc.symbolic"
    if module is None:
        raise AttributeError(f"module 'irc' has no attribute {name!r}")

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_builtin_names()))
