"""tests/api/test_symbolic_docs.py, run on the cpu backend (see conftest.py): every model and
expectation of the interpreter test must hold on compiled code too."""

from llvm_helpers import load_test_module

globals().update({k: v for k, v in vars(load_test_module("api/test_symbolic_docs.py", "_cpu_symbolic_docs")).items()
                  if not k.startswith("__")})
