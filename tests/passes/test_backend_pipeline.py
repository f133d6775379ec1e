"""irc/pipeline.py lists every pass that runs: PIPELINE (every backend) and then
BACKEND_PIPELINE (the compiled backends). Running the two lists through the pass
manager gives exactly the loop IR the cpu backend compiles."""

from irc.ir.printer import print_module
from irc.passes import PassManager, parse_pipeline
from irc.pipeline import BACKEND_PIPELINE, PIPELINE, pass_names, run_pipeline

SOURCE = """
shared W: f32[4, 3] = glorot_uniform()
fn step(x: f32[N, 4], y: i32[N], lr: f32) -> f32 {
    loss = mean(crossentropy_logits(tanh(x @ W), y))
    W <- W - lr * grad(loss, W)
    return loss
}
"""


def test_the_lists_name_registered_passes():
    assert "scan-hoist" in pass_names() and "plan-memory" in pass_names()
    PassManager(parse_pipeline(",".join(PIPELINE + BACKEND_PIPELINE)))


def test_backend_pipeline_is_what_the_cpu_backend_runs():
    from irc.frontend import compile_source
    from irc.runtime.llvm.backend import LLVMBackend

    tg = compile_source(SOURCE, "<step>", {})
    opt = run_pipeline(tg.clone())
    backend = LLVMBackend(opt.clone(), {}, cache=False)
    PassManager(parse_pipeline(",".join(BACKEND_PIPELINE))).run(opt)
    assert print_module(opt) == print_module(backend.loop_module)
