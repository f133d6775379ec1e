"""tests/frontend/test_frontend.py, run on the cpu backend (see conftest.py): every model and
expectation of the interpreter test must hold on compiled code too."""

from llvm_helpers import load_test_module

globals().update({k: v for k, v in vars(load_test_module("frontend/test_frontend.py", "_cpu_frontend")).items()
                  if not k.startswith("__")})
