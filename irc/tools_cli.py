"""The `irc verify` and `irc profile` subcommands (issue 15): argument parsing and exit
status only; the work is in irc/verify_backends.py and irc/profile.py. Kept free of NumPy at
import time, like irc/commands.py, so `irc --help` stays instant; rows in
irc/commands.py's MODEL_COMMANDS point here.

Top of the layering (with irc/cli.py and irc/commands.py): may import anything.
"""

from __future__ import annotations


def args_verify(p):
    from irc.commands import _add_model_args

    _add_model_args(p, backend=False)
    p.add_argument(
        "--backends",
        default="interp,cpu,opencl",
        help="comma-separated backends to compare with the interpreter (default: all three; "
        "opencl is skipped with a note when no OpenCL device is present, unless named here)",
    )
    p.add_argument("--fn", default=None, help="only this entry function")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--device", default=None, help="OpenCL device (name substring)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_verify(args) -> int:
    import json
    import os

    from irc.commands import UsageError, _defines
    from irc.verify_backends import verify

    if not os.path.exists(args.file):
        raise UsageError(f"cannot read {args.file}: no such file")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    try:
        report = verify(
            args.file,
            backends=backends,
            fn=args.fn,
            define=_defines(args),
            seed=args.seed,
            device=args.device,
            strict=args.backends != "interp,cpu,opencl",
        )
    except ValueError as e:
        if type(e) is ValueError:  # an unknown backend or function
            raise UsageError(str(e)) from None
        raise
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0 if report.ok else 1


def args_profile(p):
    from irc.commands import _add_model_args

    _add_model_args(p)
    p.add_argument("--fn", default="train", help="the entry function to profile (default: train)")
    p.add_argument("--steps", type=int, default=20, help="timed calls of the whole function")
    p.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="size of a named dim of the random inputs (default 32; repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the profile as JSON")


def cmd_profile(args) -> int:
    import json
    import os

    from irc.commands import UsageError, _load
    from irc.profile import profile_module

    if not os.path.exists(args.file):
        raise UsageError(f"cannot read {args.file}: no such file")
    m = _load(args)
    if args.fn not in m.functions:
        raise UsageError(
            f"{args.file} has no entry function '{args.fn}' (functions: {', '.join(m.functions)})"
        )
    dims = {}
    for item in args.dim:
        name, eq, value = item.partition("=")
        if not eq or not value.strip().isdigit() or int(value) <= 0:
            raise UsageError(f"--dim expects NAME=SIZE with SIZE > 0, got '{item}'")
        dims[name.strip()] = int(value)
    prof = profile_module(m, args.fn, steps=args.steps, seed=args.seed or 0, dims=dims)
    print(json.dumps(prof.to_dict(), indent=2) if args.json else prof.table())
    return 0
