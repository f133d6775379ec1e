"""OpenCL platforms and devices: finding one by name, the clear errors when
none matches or no platform is installed, one context and in-order queue per
device for the whole process, and building programs with a cache.

Choosing a device. `select_device(spec)` takes a substring (case
insensitive) of the platform's or the device's name, vendor or version
("pocl", "nvidia", "h200"), the device type ("gpu", "cpu", "accelerator") or
"PLATFORM:DEVICE" (two substrings). With
no spec it reads IRC_OPENCL_DEVICE (the variable the issue names for scripts
and CI), and with neither it takes the first GPU, else the first device.

Programs are built once per (source, device) in a process, and on disk by
pyopencl's binary cache (~/.cache/pyopencl, keyed by source, options and
device). PoCL compiles each kernel for its work-group size at the first launch
and keeps those in its own cache (~/.cache/pocl/kcache).

Imports pyopencl (lazily), numpy and irc.ir only.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field

from irc.ir.errors import CompileError

ENV_VAR = "IRC_OPENCL_DEVICE"
PIP_HINT = "pip install pocl-binary-distribution"


class DeviceError(CompileError):
    """No usable OpenCL platform or device (raised when a module is loaded)."""


def _cl():
    try:
        import pyopencl as cl
    except ImportError as e:  # pragma: no cover - pyopencl is a dependency
        raise DeviceError(
            f"the opencl backend needs pyopencl ({e}); pip install pyopencl, and for a CPU "
            f"OpenCL platform {PIP_HINT}"
        ) from None
    return cl


def _type_name(dev) -> str:
    cl = _cl()
    t = dev.type
    for name, bit in (
        ("GPU", cl.device_type.GPU),
        ("CPU", cl.device_type.CPU),
        ("accelerator", cl.device_type.ACCELERATOR),
    ):
        if t & bit:
            return name
    return "other"


def describe(platform, dev) -> str:
    """One line naming a device: "Portable Computing Language / pthread-AMD EPYC (CPU, OpenCL 3.0 ...)"."""
    return (
        f"{platform.name.strip()} / {dev.name.strip()} ({_type_name(dev)}, {dev.version.strip()})"
    )


def list_devices() -> list:
    """[(platform, device)] of every OpenCL device; [] when no platform is installed."""
    cl = _cl()
    try:
        platforms = cl.get_platforms()
    except cl.Error:  # PLATFORM_NOT_FOUND_KHR: no ICD installed
        return []
    out = []
    for p in platforms:
        try:
            devs = p.get_devices()
        except cl.Error:
            continue
        out.extend((p, d) for d in devs)
    return out


def _names(platform, dev) -> tuple:
    """(platform text, device text) a spec is matched against: names, vendors
    and versions (PoCL's platform is "Portable Computing Language"; "PoCL" is in
    its version)."""
    p = f"{platform.name} {platform.vendor} {platform.version}".lower()
    d = f"{dev.name} {dev.vendor} {dev.version}".lower()
    return p, d


def _matches(spec: str, platform, dev) -> bool:
    s = spec.strip().lower()
    if s in ("gpu", "cpu", "accelerator"):
        return _type_name(dev).lower() == s
    p, d = _names(platform, dev)
    if ":" in s:
        ps, ds = (x.strip() for x in s.split(":", 1))
        return ps in p and ds in d
    return s in p or s in d or s in f"{platform.name} / {dev.name}".lower()


def select_device(spec: str | None = None):
    """(platform, device) for a name substring; see the module docstring."""
    if not spec:
        spec = os.environ.get(ENV_VAR) or None
    devices = list_devices()
    if not devices:
        raise DeviceError(f"no OpenCL platform is installed; for a CPU platform: {PIP_HINT}")
    if spec:
        found = [(p, d) for p, d in devices if _matches(spec, p, d)]
        if not found:
            listing = "\n".join(f"  {describe(p, d)}" for p, d in devices)
            raise DeviceError(
                f"no OpenCL device matches '{spec}'; available devices:\n{listing}",
                hint=f"pass device= (or --device, or {ENV_VAR}) a substring of one of these",
            )
        return found[0]
    gpus = [(p, d) for p, d in devices if _type_name(d) == "GPU"]
    return (gpus or devices)[0]


@dataclass
class Device:
    """A device with its context and in-order queue, shared by every module on it."""

    platform: object
    device: object
    context: object
    queue: object
    name: str
    is_cpu: bool
    fp64: bool
    max_wg: int
    max_sizes: tuple
    local_mem: int
    compute_units: int
    programs: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_DEVICES: dict = {}
_LOCK = threading.Lock()


def open_device(spec: str | None = None) -> Device:
    """The process-wide Device for a spec (see select_device)."""
    cl = _cl()
    platform, dev = select_device(spec)
    key = dev.int_ptr
    with _LOCK:
        d = _DEVICES.get(key)
        if d is None:
            ctx = cl.Context([dev])
            queue = cl.CommandQueue(ctx, dev)
            d = Device(
                platform,
                dev,
                ctx,
                queue,
                describe(platform, dev),
                _type_name(dev) == "CPU",
                "cl_khr_fp64" in dev.extensions.split() or bool(dev.double_fp_config),
                int(dev.max_work_group_size),
                tuple(int(x) for x in dev.max_work_item_sizes),
                int(dev.local_mem_size),
                int(dev.max_compute_units),
            )
            _DEVICES[key] = d
        return d


BUILD_OPTIONS = "-cl-std=CL1.2"


def build_program(dev: Device, source: str):
    """The built program for a source on a device: once per process, and from
    pyopencl's disk cache across processes. Raises DeviceError with the build
    log when the OpenCL compiler rejects the source (a bug of ours)."""
    cl = _cl()
    key = hashlib.sha256(source.encode()).hexdigest()
    with dev.lock:
        prg = dev.programs.get(key)
        if prg is not None:
            return prg
        try:
            prg = cl.Program(dev.context, source).build(options=BUILD_OPTIONS)
        except cl.RuntimeError as e:
            raise DeviceError(
                f"the OpenCL compiler of {dev.name} rejected irc's kernels (a bug in irc):\n{e}"
            ) from None
        dev.programs[key] = prg
        return prg
