"""tests/test_train.py, run on the cpu backend (see conftest.py): every model and
expectation of the interpreter test must hold on compiled code too."""

from llvm_helpers import load_test_module

globals().update({k: v for k, v in vars(load_test_module("test_train.py", "_cpu_train")).items()
                  if not k.startswith("__")})
