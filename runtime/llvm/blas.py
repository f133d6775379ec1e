"""The optimised BLAS the generated code calls for matrix products: OpenBLAS
from the `scipy-openblas32` wheel (32-bit integers, symbols prefixed
`scipy_`), loaded with ctypes and bound into the JIT with llvm.add_symbol.
Also the process symbols the generated code needs (pthreads, libm).

Imports llvmlite only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import llvmlite.binding as llvm

_LIB = None
_BOUND = False

BLAS_SYMBOLS = ("scipy_cblas_sgemm", "scipy_cblas_dgemm")
PROCESS_SYMBOLS = {
    None: ("pthread_create", "pthread_join", "pthread_detach", "usleep", "getpid", "sched_yield",
           "malloc", "free", "pthread_mutex_init", "pthread_mutex_lock", "pthread_mutex_unlock",
           "pthread_cond_init", "pthread_cond_wait", "pthread_cond_signal", "clock_gettime"),
    "m": ("tanh", "log1p", "exp", "log", "pow", "sin", "cos", "expf", "logf", "powf", "sinf", "cosf"),
}


class BlasUnavailable(RuntimeError):
    pass


def load_openblas():
    """The ctypes handle of libscipy_openblas.so (loaded once)."""
    global _LIB
    if _LIB is None:
        try:
            import scipy_openblas32
        except ImportError:
            raise BlasUnavailable(
                "the cpu backend needs the scipy-openblas32 package (pip install scipy-openblas32)"
            ) from None
        path = os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")
        _LIB = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    return _LIB


def _addr(lib, name):
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


def bind_symbols() -> None:
    """Make BLAS, pthread and libm symbols resolvable by the JIT (idempotent)."""
    global _BOUND
    if _BOUND:
        return
    lib = load_openblas()
    for name in BLAS_SYMBOLS:
        llvm.add_symbol(name, _addr(lib, name))
    # One thread inside OpenBLAS: generated code splits large products over its
    # own pthreads, and an idle OpenBLAS pool spins on the cores it needs.
    lib.scipy_openblas_set_num_threads(ctypes.c_int(1))
    for libname, names in PROCESS_SYMBOLS.items():
        handle = ctypes.CDLL(ctypes.util.find_library(libname) if libname else None)
        for name in names:
            try:
                llvm.add_symbol(name, _addr(handle, name))
            except AttributeError:
                pass
    _BOUND = True


def set_blas_threads(n: int) -> None:
    """OpenBLAS's thread count (process-wide)."""
    load_openblas().scipy_openblas_set_num_threads(ctypes.c_int(int(n)))


def blas_threads() -> int:
    return int(load_openblas().scipy_openblas_get_num_threads())
