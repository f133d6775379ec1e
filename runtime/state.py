"""Initial values of shared variables (tg.global ops): zeros, ones, full,
normal, uniform, glorot_uniform and load (.npz/.npy, never pickles).

Random initialisers are reproducible from the module seed: each variable
draws from its own stream, seeded by (seed, crc32 of its name), so adding a
variable does not change the others. Errors are CompileErrors located at the
declaration. Imports irc.ir only.
"""

from __future__ import annotations

import os
import zlib

import numpy as np

from irc.ir.core import Module, Op
from irc.ir.errors import CompileError


def initial_values(module: Module, base_dir: str, seed: int) -> dict:
    """{name: array} for every tg.global of the module."""
    out = {}
    for op in module.body.ops:
        if op.name == "tg.global":
            out[op.attrs["sym_name"]] = initial_value(op, base_dir, seed)
    return out


def _args(op: Op):
    pos, kw = [], {}
    for a in op.attrs.get("init_args", ()):
        if (
            isinstance(a, tuple)
            and len(a) == 2
            and isinstance(a[0], str)
            and a[0] in ("mean", "std", "lo", "hi", "value", "key")
        ):
            kw[a[0]] = a[1]
        else:
            pos.append(a)
    return pos, kw


def memory_limit() -> int:
    """Bytes one shared variable may take: the machine's physical memory
    (IRC_MAX_SHARED_BYTES overrides it, e.g. for tests)."""
    env = os.environ.get("IRC_MAX_SHARED_BYTES")
    if env:
        return int(env)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def initial_value(op: Op, base_dir: str, seed: int) -> np.ndarray:
    name, t, init = op.attrs["sym_name"], op.attrs["type"], op.attrs["init"]
    shape = tuple(t.shape)
    dt = t.dtype.np
    # Checked before NumPy sees the shape: a MemoryError or "maximum allowed
    # dimension exceeded" would not say which variable, nor where.
    nbytes = dt.itemsize
    for d in shape:
        nbytes *= int(d)
    limit = memory_limit()
    if nbytes > limit:
        raise CompileError(
            f"shared variable '{name}' ({t}) needs {_human(nbytes)}, more than this "
            f"machine's memory ({_human(limit)})",
            op.loc,
        )
    try:
        return _initial_value(op, name, t, init, shape, dt, base_dir, seed)
    except MemoryError:
        raise CompileError(
            f"shared variable '{name}' ({t}): cannot allocate {_human(nbytes)}", op.loc
        ) from None


def _initial_value(op, name, t, init, shape, dt, base_dir, seed):
    pos, kw = _args(op)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(name.encode())])

    def arg(i, key, default):
        if key in kw:
            return kw[key]
        return pos[i] if i < len(pos) else default

    if init == "zeros":
        return np.zeros(shape, dt)
    if init == "ones":
        return np.ones(shape, dt)
    if init == "full":
        return np.full(shape, arg(0, "value", 0), dt)
    if init == "normal":
        return rng.normal(float(arg(0, "mean", 0.0)), float(arg(1, "std", 1.0)), shape).astype(dt)
    if init == "uniform":
        return rng.uniform(float(arg(0, "lo", -1.0)), float(arg(1, "hi", 1.0)), shape).astype(dt)
    if init == "glorot_uniform":
        fan_in, fan_out = _fans(shape)
        limit = np.sqrt(6.0 / max(fan_in + fan_out, 1))
        return rng.uniform(-limit, limit, shape).astype(dt)
    if init == "load":
        return _load(op, base_dir, str(arg(0, "file", "")), arg(1, "key", None))
    raise CompileError(f"unknown initialiser '{init}'", op.loc)


def _fans(shape):
    """Glorot fans: [in, out] for matrices; OIHW conv filters use the
    receptive field (fan_in = I*kh*kw, fan_out = O*kh*kw)."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    rf = int(np.prod(shape[2:]))
    return shape[1] * rf, shape[0] * rf


def _load(op: Op, base_dir: str, file: str, key):
    t = op.attrs["type"]
    path = file if os.path.isabs(file) else os.path.join(base_dir, file)
    if not file.endswith((".npz", ".npy")):
        raise CompileError(f"load: '{file}' must be a .npz or .npy file", op.loc)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CompileError(f"load: file not found: {path}", op.loc) from None
    except ValueError as e:
        raise CompileError(
            f"load: cannot read {path}: {e} (pickled data is refused)", op.loc
        ) from None
    except OSError as e:
        raise CompileError(f"load: cannot read {path}: {e}", op.loc) from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if key is None:
                raise CompileError(
                    f'load: {file} is an archive; name the array: load("{file}", "key")', op.loc
                )
            if key not in data.files:
                raise CompileError(
                    f"load: {file} has no array '{key}' (it has: {', '.join(data.files)})", op.loc
                )
            try:
                arr = data[key]
            except ValueError as e:
                raise CompileError(f"load: cannot read '{key}' from {file}: {e}", op.loc) from None
    else:
        arr = data
    if tuple(arr.shape) != tuple(t.shape):
        raise CompileError(
            f"load: '{key or file}' has shape {list(arr.shape)} but the variable is {t}", op.loc
        )
    if not np.can_cast(arr.dtype, t.dtype.np, "same_kind"):
        raise CompileError(
            f"load: '{key or file}' has dtype {arr.dtype}, cannot convert to {t.dtype}", op.loc
        )
    return np.asarray(arr, dtype=t.dtype.np, order="C")
