"""tests/api/test_unknown_dims.py, run on the OpenCL backend (see conftest.py)."""

from opencl_helpers import load_test_module

globals().update(
    {
        k: v
        for k, v in vars(
            load_test_module("api/test_unknown_dims.py", "_opencl_unknown_dims")
        ).items()
        if not k.startswith("__")
    }
)
