"""irc.passes: IR-to-IR passes over the tg and loop dialects, one file per pass named
after its CLI name (cse -> cse.py -> CSE -> tests/passes/cse.tgir), and the pass
manager (pass_manager.py) that runs them.

Installed as irc.passes (pyproject package-dir mapping). Passes import only irc.ir and
irc.ops; never irc.frontend, irc.runtime, irc.pipeline, irc.api or irc.cli
(tests/test_layering.py checks it). Pass modules are imported on demand by name, so
importing this package stays cheap.
"""

from irc.passes.pass_manager import (
    Pass,
    PassCrash,
    PassManager,
    PipelineError,
    available_passes,
    get_pass,
    parse_pipeline,
    register,
)

__all__ = [
    "Pass",
    "PassCrash",
    "PassManager",
    "PipelineError",
    "available_passes",
    "get_pass",
    "parse_pipeline",
    "register",
]
