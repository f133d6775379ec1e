"""tests/theano/test_theano_api.py, run on the cpu backend (see conftest.py). Slow
(~30 s of compiles): the tutorials of tests/theano run on the cpu backend by default."""

import pytest
from llvm_helpers import load_test_module

pytestmark = pytest.mark.slow

globals().update(
    {
        k: v
        for k, v in vars(load_test_module("theano/test_theano_api.py", "_cpu_theano_api")).items()
        if not k.startswith("__")
    }
)
