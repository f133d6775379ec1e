"""tests/frontend/test_frontend.py, run on the OpenCL backend (see conftest.py): every model and
expectation of the interpreter test must hold on the device too."""

from opencl_helpers import load_test_module

globals().update(
    {
        k: v
        for k, v in vars(load_test_module("frontend/test_frontend.py", "_opencl_frontend")).items()
        if not k.startswith("__")
    }
)
