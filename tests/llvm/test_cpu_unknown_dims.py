"""tests/api/test_unknown_dims.py, run on the cpu backend (see conftest.py)."""

from llvm_helpers import load_test_module

globals().update(
    {
        k: v
        for k, v in vars(load_test_module("api/test_unknown_dims.py", "_cpu_unknown_dims")).items()
        if not k.startswith("__")
    }
)
