"""The OpenCL backend: loop IR -> OpenCL C kernels (codegen, kernels), a host
schedule of kernel launches per entry function (schedule), device and program
management with pyopencl (device), and the backend object whose shared
variables stay in device memory (backend).

Importing this package is cheap; pyopencl is imported by the modules that
need it.
"""


def __getattr__(name):
    if name in ("OpenCLBackend", "CallError"):
        from . import backend

        return getattr(backend, name)
    if name in ("DeviceError", "select_device", "list_devices"):
        from . import device

        return getattr(device, name)
    raise AttributeError(name)
