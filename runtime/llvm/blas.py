"""The optimised BLAS the generated code calls for matrix products: OpenBLAS
from the `scipy-openblas32` wheel (32-bit integers, symbols prefixed
`scipy_`), loaded with ctypes and bound into the JIT with llvm.add_symbol.
Also the process symbols the generated code needs (pthreads, libm).

Imports llvmlite only.
"""

from __future__ import annotations

import ctypes
import os

import llvmlite.binding as llvm

_LIB = None
_BOUND = False
_BLAS_BOUND = False

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
        path = _library_path()
        # OpenBLAS starts its thread pool when the library loads (one thread per
        # core, read from OPENBLAS_NUM_THREADS), and each new thread spins for
        # ~0.1 s of CPU before it sleeps. irc runs OpenBLAS on one thread (see
        # bind_blas), so it loads with the variable at 1: no pool is started at
        # all (set_blas_threads(n) still starts one later). The variable is put
        # back at once: NumPy's OpenBLAS has read its own already, and what
        # else loads later sees the user's setting.
        saved = os.environ.get("OPENBLAS_NUM_THREADS")
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        try:
            _LIB = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        finally:
            if saved is None:
                del os.environ["OPENBLAS_NUM_THREADS"]
            else:
                os.environ["OPENBLAS_NUM_THREADS"] = saved
    return _LIB


def _library_path() -> str:
    """libscipy_openblas.so of the scipy-openblas32 wheel, found without importing
    the package (its __init__ costs ~25 ms of start-up: importlib.metadata and more)."""
    import importlib.util

    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None:
        raise BlasUnavailable(
            "the cpu backend needs the scipy-openblas32 package (pip install scipy-openblas32)"
        )
    for top in spec.submodule_search_locations or ():
        path = os.path.join(top, "lib", "libscipy_openblas.so")
        if os.path.exists(path):
            return path
    import scipy_openblas32  # an unusual layout: ask the package

    return os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")


def _find_library(name: str):
    # the usual glibc soname first: ctypes.util.find_library runs `ldconfig -p` (~20 ms)
    try:
        ctypes.CDLL(f"lib{name}.so.6")
        return f"lib{name}.so.6"
    except OSError:
        from ctypes import util

        return util.find_library(name)


def _addr(lib, name):
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


def bind_symbols() -> None:
    """Make BLAS, pthread and libm symbols resolvable by the JIT (idempotent)."""
    bind_process_symbols()
    bind_blas()


def bind_blas() -> None:
    """Load OpenBLAS and bind its symbols (idempotent; only objects that call it need it)."""
    global _BLAS_BOUND
    if _BLAS_BOUND:
        return
    lib = load_openblas()
    for name in BLAS_SYMBOLS:
        llvm.add_symbol(name, _addr(lib, name))
    # One thread inside OpenBLAS: generated code splits large products over its
    # own pthreads, and an idle OpenBLAS pool spins on the cores it needs.
    lib.scipy_openblas_set_num_threads(ctypes.c_int(1))
    _BLAS_BOUND = True


def bind_process_symbols() -> None:
    """Bind the pthread and libm symbols generated code calls (idempotent)."""
    global _BOUND
    if _BOUND:
        return
    for libname, names in PROCESS_SYMBOLS.items():
        handle = ctypes.CDLL(_find_library(libname) if libname else None)
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
