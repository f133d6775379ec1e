"""The `irc` subcommands that work on `.tg` models: compile, run, dump,
inspect, check and train. Each is a pair `_args_NAME(parser)` /
`cmd_NAME(args) -> exit status`, listed in MODEL_COMMANDS and merged into
irc/cli.py's COMMANDS table. Errors in the model raise CompileError, which
irc.cli.main prints as FILE:LINE:COL with a caret (exit 1).

Sits at the top of the layering (with irc/cli.py): may import anything.
"""

from __future__ import annotations

import argparse
import ast as pyast
import os
import sys
from collections import Counter

import irc.tools_cli as _tools  # irc verify, irc profile (issue 15)

STAGES = ("ast", "tg", "opt")


class UsageError(Exception):
    """A mistake on the command line: printed as `irc: error: ...`, exit 1."""


def _add_model_args(p: argparse.ArgumentParser, backend=True) -> None:
    p.add_argument("file", help="the .tg model")
    p.add_argument(
        "-D",
        dest="defines",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a const of the model (repeatable)",
    )
    if backend:
        p.add_argument(
            "--backend", default=None, help="interp, cpu or opencl (default: the API's default)"
        )
        p.add_argument("--device", default=None, help="OpenCL device (name substring)")
        p.add_argument("--seed", type=int, default=None, help="seed of the random initialisers")


def _defines(args) -> dict:
    out = {}
    for item in args.defines:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"-D expects NAME=VALUE, got '{item}'")
        out[name.strip()] = value.strip()
    return out


def _read(path: str) -> str:
    from irc.ir.errors import read_source

    try:
        return read_source(path)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None


def _load(args):
    import irc.api as api

    kwargs = {"define": _defines(args), "seed": args.seed}
    if args.backend:
        kwargs["backend"] = args.backend
    if getattr(args, "device", None):
        kwargs["device"] = args.device
    if getattr(args, "nan_guard", False):
        kwargs["nan_guard"] = True
    if not os.path.exists(args.file):
        raise UsageError(f"cannot read {args.file}: no such file")
    try:
        return api.load(args.file, **kwargs)
    except ValueError as e:
        if type(e) is ValueError:  # e.g. an unknown backend name
            raise UsageError(str(e)) from None
        raise


# -- irc compile ------------------------------------------------------------------------------


def _args_compile(p):
    _add_model_args(p)


def cmd_compile(args) -> int:
    m = _load(args)
    fns = ", ".join(m.functions) or "no entry functions"
    print(f"{args.file}: ok ({m.backend}): {fns}")
    return 0


# -- irc run ----------------------------------------------------------------------------------


def _args_run(p):
    _add_model_args(p)
    p.add_argument("--fn", required=True, help="the entry function to call")
    p.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=FILE.npy|VALUE",
        help="an argument: a .npy/.npz file or a number or list literal (repeatable)",
    )
    p.add_argument("--out", default=None, help="save the results to this .npz file")
    p.add_argument(
        "--nan-guard", action="store_true", help="stop at the first op that produces a NaN or Inf"
    )


def _parse_arg_value(text: str):
    import numpy as np

    if text.endswith((".npy", ".npz")):
        try:
            data = np.load(text, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read {text}: {e}") from None
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if len(data.files) != 1:
                    raise UsageError(
                        f"{text} holds {len(data.files)} arrays; pass a .npy file or a one-array .npz"
                    )
                return data[data.files[0]]
        return data
    try:
        return np.asarray(pyast.literal_eval(text))
    except (ValueError, SyntaxError):
        raise UsageError(
            f"cannot read the value '{text}': give a number, a list literal or a .npy file"
        ) from None


def cmd_run(args) -> int:
    import numpy as np

    import irc.api as api

    m = _load(args)
    if args.fn not in m.functions:
        raise UsageError(
            f"{args.file} has no entry function '{args.fn}' (functions: {', '.join(m.functions)})"
        )
    kwargs = {}
    for item in args.arg:
        name, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"--arg expects NAME=VALUE, got '{item}'")
        kwargs[name.strip()] = _parse_arg_value(value.strip())
    from irc.nanguard import NanGuardError

    try:
        out = getattr(m, args.fn)(**kwargs)
    except (api.CallError, IndexError) as e:  # wrong arguments; a run-time check of the model
        raise UsageError(str(e)) from None
    except NanGuardError as e:  # --nan-guard: the first op that produced a NaN or Inf
        print(e.format(), file=sys.stderr)
        return 1
    sig = m.signature(args.fn)
    results = out if isinstance(out, tuple) else (() if out is None else (out,))
    for i, (r, t) in enumerate(zip(results, sig.results)):
        print(f"result {i}: {describe_array(np.asarray(r))}")
    if args.out:
        np.savez(args.out, **{f"result{i}": np.asarray(r) for i, r in enumerate(results)})
        print(f"saved {len(results)} result(s) to {args.out}")
    return 0


def describe_array(a) -> str:
    import numpy as np

    head = f"{a.dtype.name}{list(a.shape) if a.ndim else ''}"
    if a.size <= 8:
        return f"{head} = {np.array2string(a, precision=6, separator=', ')}"
    if a.dtype.kind in "fiu":
        return f"{head} min {a.min():.6g} max {a.max():.6g} mean {a.mean():.6g}"
    return f"{head} ({int(a.sum())} true)"


# -- irc dump ---------------------------------------------------------------------------------


def _args_dump(p):
    _add_model_args(p, backend=False)
    p.add_argument("--fn", default=None, help="only this function")
    p.add_argument(
        "--stage",
        default="opt",
        help="ast, tg (front end), opt (after the pipeline), or a "
        "backend stage: loops, llvm, asm (cpu), opencl",
    )
    p.add_argument(
        "--print-ir-after",
        action="append",
        default=[],
        metavar="PASS",
        help="print the module after this pipeline pass (repeatable)",
    )
    p.add_argument(
        "--print-ir-after-all", action="store_true", help="print the module after every pass"
    )
    p.add_argument(
        "--print-ir-after-change",
        action="store_true",
        help="print only when the pass changed the module",
    )
    p.add_argument("--time-passes", action="store_true", help="print the time of each pass")
    p.add_argument("--print-locs", action="store_true", help="print loc(...) on every op")
    p.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    p.add_argument("--device", default=None, help="OpenCL device for --stage opencl")


def cmd_dump(args) -> int:
    from irc.api import compile_to_ir
    from irc.frontend.ast import dump_ast
    from irc.frontend.parse import parse_source
    from irc.ir.printer import print_module, print_op
    from irc.pipeline import backend_pass_names, pass_names, run_backend_pipeline, run_pipeline

    text = _read(args.file)
    if args.stage == "ast":
        print(dump_ast(parse_source(text, args.file)))
        return 0
    names = pass_names() + backend_pass_names()
    for name in args.print_ir_after:
        if name not in names:
            raise UsageError(f"'{name}' is not a pass of the pipeline ({', '.join(names)})")
    module = compile_to_ir(text, args.file, _defines(args))
    if args.stage not in ("tg", "opt"):
        return _dump_backend_stage(args, text)
    if args.stage == "opt":
        printing = {
            "print_ir_after": args.print_ir_after,
            "print_ir_after_all": args.print_ir_after_all,
            "print_ir_after_change": args.print_ir_after_change,
            "time_passes": args.time_passes,
            "print_locs": args.print_locs,
            "out": sys.stdout,
        }
        run_pipeline(module, **printing)
        if set(args.print_ir_after) & set(backend_pass_names()):
            # the compiled backends' passes (lower-to-loops, kernelize) on a copy
            run_backend_pipeline(module.clone(), **printing)
    if args.fn is not None:
        op = module.lookup(args.fn)
        if op is None or op.name != "func.func":
            raise UsageError(f"no function '{args.fn}' at stage {args.stage}")
        print(print_op(op, locs=args.print_locs))
    elif args.stage == "tg" or not (
        args.print_ir_after or args.print_ir_after_all or args.print_ir_after_change
    ):
        text = print_module(module, locs=args.print_locs)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _dump_backend_stage(args, text) -> int:
    import irc.api as api

    backend = {"loops": "cpu", "llvm": "cpu", "asm": "cpu", "opencl": "opencl"}.get(args.stage)
    if backend is None:
        raise UsageError(f"unknown stage '{args.stage}' (ast, tg, opt, loops, llvm, asm, opencl)")
    if args.print_locs and args.stage != "loops":
        raise UsageError(f"--print-locs applies to the tg, opt and loops stages, not '{args.stage}'")
    kwargs = {"define": _defines(args), "backend": backend}
    if args.device:
        kwargs["device"] = args.device
    m = api.load(args.file, **kwargs)
    dump = getattr(m._backend, "dump", None)
    if dump is None:
        raise UsageError(f"the {backend} backend cannot dump stage '{args.stage}'")
    print(dump(args.stage, fn=args.fn, locs=args.print_locs))
    return 0


# -- irc inspect ------------------------------------------------------------------------------


def _args_inspect(p):
    _add_model_args(p, backend=False)
    p.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="evaluate the cost estimates at this size of a named dim (repeatable)",
    )


def cmd_inspect(args) -> int:
    import numpy as np

    import irc.api as api
    from irc.ops.cost import func_cost

    m = api.load(args.file, define=_defines(args))
    print(f"module {args.file}")
    print("entry functions:")
    for name in m.functions:
        print(f"  {m.signature(name)}")
    print("shared variables:")
    total, nbytes = 0, 0
    for name, t in m.shared.items():
        n = int(np.prod(t.shape)) if t.shape else 1
        total += n
        nbytes += n * t.dtype.np.itemsize
        print(f"  {name}: {t}  ({n:,} elements, {_size(n * t.dtype.np.itemsize)})")
    print(f"parameters: {total:,} ({_size(nbytes)})")
    dims = {}
    for item in args.dim:
        name, eq, value = item.partition("=")
        if not eq or not value.strip().isdigit():
            raise UsageError(f"--dim expects NAME=SIZE, got '{item}'")
        dims[name.strip()] = int(value)
    print("after the pipeline, per entry function (estimates: 1 FLOP per scalar operation):")
    for fn in m._opt.functions():
        counts = Counter(
            op.name
            for op in fn.walk()
            if op is not fn
            and op.name not in ("func.return",)
            and op.parent_op().name != "tg.fused"
        )
        body = ", ".join(
            f"{k.split('.', 1)[1]} {v}"
            for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        cost = func_cost(fn)
        print(f"  {fn.attrs['sym_name']}: {cost['kernels']} kernels, {cost['fused']} of them fused")
        print(
            f"    FLOPs {_quantity(cost['flops'], dims)}; bytes moved {_quantity(cost['bytes'], dims)}"
        )
        print(f"    {sum(counts.values())} ops: {body}")
    return 0


def _quantity(d, dims) -> str:
    from irc.ir.dims import dim_names, eval_dim

    if isinstance(d, int):
        return f"{d:,}"
    names = sorted(dim_names(d))
    missing = [n for n in names if n not in dims]
    if missing:
        return f"{d} (pass --dim {missing[0]}=SIZE to evaluate)"
    at = ", ".join(f"{n}={dims[n]}" for n in names)
    return f"{eval_dim(d, dims):,} at {at} ({d})"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# -- irc check --------------------------------------------------------------------------------


def _args_check(p):
    _add_model_args(p, backend=False)
    p.add_argument(
        "--size",
        type=int,
        default=4,
        help="size of the named dims of the random inputs (distinct dims get size, size+1, ...)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and directions")
    p.add_argument("--dirs", type=int, default=3, help="random directions per gradient")


def cmd_check(args) -> int:
    from irc.gradcheck import check_module

    records = check_module(
        _read(args.file),
        args.file,
        _defines(args),
        size=args.size,
        seed=args.seed,
        n_dirs=args.dirs,
    )
    if not records:
        print(f"{args.file}: no grad(...) in any entry function")
        return 0
    for r in records:
        print(r)
    failed = sum(1 for r in records if not r.ok)
    print(f"{len(records) - failed} of {len(records)} gradient checks passed")
    return 1 if failed else 0


# -- irc train --------------------------------------------------------------------------------


def _args_train(p):
    p.add_argument(
        "file", help="a .tg model with fn train(...) -> f32, or a shipped example's name (mlp)"
    )
    p.add_argument(
        "-D",
        dest="defines",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a const of the model (repeatable)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="digits, reber, signal or FILE.npz (default: the model's '# data:' line)",
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument(
        "--lr", type=float, default=None, help="default: the lr argument's default in train"
    )
    p.add_argument("--backend", default=None, help="interp, cpu or opencl")
    p.add_argument("--device", default=None, help="OpenCL device (name substring)")
    p.add_argument(
        "--seed", type=int, default=None, help="seed of the initialisers and the shuffling"
    )
    p.add_argument(
        "--save", metavar="CKPT.npz", help="write a checkpoint after each epoch (atomically)"
    )
    p.add_argument("--resume", metavar="CKPT.npz", help="start from a checkpoint")
    p.add_argument(
        "--plot", metavar="FILE.png", help="draw the loss and accuracy curves (needs matplotlib)"
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument(
        "--nan-guard", action="store_true", help="stop at the first op that produces a NaN or Inf"
    )
    p.add_argument(
        "--profile", action="store_true", help="after training, profile one step (irc profile)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="threads of the cpu backend (default: $IRC_NUM_THREADS, else the usable cores)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="data-parallel training on N Ray workers (docs/distributed.md; needs Ray)",
    )
    p.add_argument(
        "--ray-address", default=None, help="a running Ray cluster (default: start a local Ray)"
    )
    p.add_argument(
        "--elastic", action="store_true", help="with --workers: go on when a worker dies"
    )


def cmd_train(args) -> int:
    from irc.nanguard import NanGuardError
    from irc.train import TrainError, train

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be a positive integer, got {args.threads}")
    extra = {}
    if args.workers is not None:
        from irc.distributed import train

        extra = {"workers": args.workers, "ray_address": args.ray_address, "elastic": args.elastic}
        if args.nan_guard or args.profile:
            # the workers run split functions (train_grads/train_apply), not the guarded or
            # profiled train: check or profile a model in one process first
            raise UsageError("--nan-guard and --profile are for one process, not --workers")
    elif args.ray_address or args.elastic:
        raise UsageError("--ray-address and --elastic need --workers N")
    else:
        extra = {"nan_guard": args.nan_guard, "profile": args.profile}
    try:
        r = train(
            args.file,
            data=args.data,
            epochs=args.epochs,
            batch=args.batch,
            lr=args.lr,
            backend=args.backend,
            device=args.device,
            seed=args.seed,
            save=args.save,
            resume=args.resume,
            plot=args.plot,
            progress=args.progress,
            define=_defines(args),
            threads=args.threads,
            **extra,
        )
    except TrainError as e:
        raise UsageError(str(e)) from None
    except NanGuardError as e:  # --nan-guard: the first op that produced a NaN or Inf
        print(f"\n{e.format()}", file=sys.stderr)
        return 1
    return 130 if r["interrupted"] else 0


def _build_module():
    import irc.build

    return irc.build


MODEL_COMMANDS = {
    "compile": (_args_compile, cmd_compile, "check a .tg model and build every entry function"),
    "run": (
        _args_run,
        cmd_run,
        "call one entry function of a .tg model once and print the results",
    ),
    "dump": (_args_dump, cmd_dump, "print a .tg model's AST or IR at a stage of the pipeline"),
    "inspect": (
        _args_inspect,
        cmd_inspect,
        "summarise a .tg model: functions, shared variables, ops",
    ),
    "check": (
        _args_check,
        cmd_check,
        "check every grad(...) of a .tg model against finite differences",
    ),
    "train": (_args_train, cmd_train, "train a .tg model with SGD on its data, showing progress"),
    "verify": (_tools.args_verify, _tools.cmd_verify, "compare every backend with the interpreter"),
    "profile": (_tools.args_profile, _tools.cmd_profile, "time each kernel and source line"),
    "build": (  # irc/build.py
        lambda p: _build_module().add_args(p),
        lambda args: _build_module().run(args),
        "build a .tg model into a C library (lib<model>.so, <model>.h) for use without Python",
    ),
}
