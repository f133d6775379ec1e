"""The LLVM CPU backend: loop IR -> LLVM IR (codegen, transcendentals) -> O3 for
the host CPU -> MCJIT (jit, with the on-disk compile cache), BLAS through
scipy-openblas32 (blas), a persistent thread pool written in LLVM IR for large
loop nests and products (threads), and the backend object with the call path
(backend).

Importing this package is cheap; llvmlite is imported by the modules that
need it.
"""


def __getattr__(name):
    if name in ("LLVMBackend", "CallError"):
        from . import backend

        return getattr(backend, name)
    raise AttributeError(name)
