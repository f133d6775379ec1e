"""The `irc` command line: argparse with one subcommand per job.

Each subcommand is a pair: `_args_NAME(parser)` declares its arguments and `cmd_NAME(args)`
does the work and returns the exit status. Adding one (compile, run, dump, inspect, train,
check) is adding the pair and a row to COMMANDS. Heavy imports (numpy through irc.ir) are
made inside the cmd_ functions so `irc --help` stays instant.

Exit status: 0 success, 1 a mistake in the input (a CompileError, printed as
`FILE:LINE:COL: error: message` with the source line and a caret, never a traceback),
2 an internal compiler error (one line and a hint; the traceback only with IRC_DEBUG=1).
IRC_DEBUG=1 is the one debug switch.

Sits at the top of the layering: may import anything of the project.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from typing import Optional

from irc import __version__

_BUG_HINT = "this is a bug in irc; please report it with the input that triggers it"


def _debug() -> bool:
    return os.environ.get("IRC_DEBUG", "") not in ("", "0")


# -- irc opt --------------------------------------------------------------------------------


def _args_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="textual IR (.tgir); '-' reads standard input")
    p.add_argument(
        "-p",
        "--passes",
        action="append",
        default=[],
        metavar="PIPELINE",
        help="comma-separated passes with options, e.g. 'cse,dce,scan-unroll{max-steps=16}'",
    )
    p.add_argument(
        "-o", "--output", default="-", help="where to write the result (default: stdout)"
    )
    p.add_argument(
        "--print-ir-after",
        action="append",
        default=[],
        metavar="PASS",
        help="dump the IR to stderr after each run of PASS (repeatable, or comma-separated)",
    )
    p.add_argument("--print-ir-after-all", action="store_true", help="dump the IR after every pass")
    p.add_argument(
        "--print-ir-after-change",
        action="store_true",
        help="dump only after passes that changed the IR (alone: after every such pass)",
    )
    p.add_argument("--time-passes", action="store_true", help="print per-pass wall times to stderr")
    p.add_argument("--print-locs", action="store_true", help="print loc(...) source locations")
    p.add_argument(
        "--no-verify-each",
        dest="verify_each",
        action="store_false",
        help="do not verify the IR after each pass (it is verified once before the passes)",
    )
    p.add_argument(
        "--split-input-file",
        action="store_true",
        help="treat each chunk between lines '// -----' as a separate module",
    )
    p.add_argument(
        "--verify-diagnostics",
        action="store_true",
        help="check errors against '// expected-error[@+N|@-N] {{text}}' comments in the input",
    )
    p.add_argument("--list-passes", action="store_true", help="list the available passes and exit")


def cmd_opt(args) -> int:
    """Parse textual IR, verify it, run a pass pipeline, print the result (like mlir-opt)."""
    from irc.diagnostics import CompileError, register_source
    from irc.passes import available_passes, get_pass, parse_pipeline

    if args.list_passes:
        for name in available_passes():
            print(f"{name:24} {get_pass(name).summary}")
        return 0
    if args.file is None:
        raise _UsageError("irc opt: a FILE (or '-' for stdin) is required")

    passes = parse_pipeline(",".join(args.passes))
    after = {n.strip() for item in args.print_ir_after for n in item.split(",") if n.strip()}
    for name in sorted(after):
        get_pass(name)  # an unknown name is a typo: say so rather than print nothing

    filename, text = _read_input(args.file)
    register_source(filename, text)
    chunks = _split_chunks(text) if args.split_input_file else [(0, text)]

    outputs, status = [], 0
    for first_line, chunk in chunks:
        # Padding with newlines keeps every line number true to the whole file.
        padded = "\n" * first_line + chunk
        run = functools.partial(_opt_one, padded, filename, passes, after, args)
        if args.verify_diagnostics:
            status |= _verify_diagnostics(padded, filename, run)
        elif len(chunks) == 1:
            outputs.append(run())  # a CompileError goes up to main()
        else:
            # Like mlir-opt: report the error of each chunk and go on with the next.
            try:
                outputs.append(run())
            except CompileError as e:
                _print_error(e.format())
                status = 1
    if not args.verify_diagnostics:
        _write_output(args.output, "// -----\n".join(outputs))
    return status


def _opt_one(text: str, filename: str, passes: list, after: set, args) -> str:
    from irc.ir.parser import parse_module
    from irc.ir.printer import print_module
    from irc.ir.verifier import verify
    from irc.ops.registry import verify_op
    from irc.passes import PassManager

    module = parse_module(text, filename)
    verify(module, op_check=verify_op)
    pm = PassManager(
        passes,
        print_ir_after=after,
        print_ir_after_all=args.print_ir_after_all,
        print_ir_after_change=args.print_ir_after_change,
        time_passes=args.time_passes,
        verify_each=args.verify_each,
        print_locs=args.print_locs,
        out=sys.stderr,
    )
    pm.run(module)
    out = print_module(module, locs=args.print_locs)
    return out if out.endswith("\n") else out + "\n"


_SPLIT_MARKER = re.compile(r"^// -----\s*$")


def _split_chunks(text: str) -> list:
    """(index of the first line, text) of each chunk between `// -----` lines. Only an
    exact marker line splits, so `// ----- IR dump after cse -----` headers do not."""
    chunks, cur, start = [], [], 0
    for i, line in enumerate(text.splitlines(keepends=True)):
        if _SPLIT_MARKER.match(line):
            chunks.append((start, "".join(cur)))
            cur, start = [], i + 1
        else:
            cur.append(line)
    chunks.append((start, "".join(cur)))
    return chunks


_EXPECTED = re.compile(r"//\s*expected-error(?:@([+-]\d+))?\s*\{\{(.*?)\}\}")


def _verify_diagnostics(text: str, filename: str, run) -> int:
    """Run `run()`, which raises at most one CompileError, and compare it with the
    `expected-error` comments of `text`. Returns 0 when they agree, else prints why and
    returns 1. Ours stops at the first error, so a chunk holds at most one expectation
    (use --split-input-file for more)."""
    from irc.diagnostics import CompileError, Loc, format_diagnostic

    expected = []  # (line, text, loc of the comment)
    for i, line in enumerate(text.splitlines(), start=1):
        for m in _EXPECTED.finditer(line):
            target = i + int(m.group(1)) if m.group(1) else i
            expected.append((target, m.group(2), Loc(filename, i, m.start() + 1)))
    try:
        run()
        error = None
    except CompileError as e:
        error = e
    failures = []
    matched = False
    for target, want, where in expected:
        if (
            error is not None
            and not matched
            and error.loc is not None
            and error.loc.line == target
            and want in error.message
        ):
            matched = True
            continue
        failures.append(format_diagnostic(f'expected error "{want}" was not produced', where))
    if error is not None and not matched:
        failures.append(format_diagnostic(f"unexpected error: {error.message}", error.loc))
    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


def _read_input(path: str) -> tuple:
    from irc.ir.errors import decode_source, read_source

    if path == "-":
        buf = getattr(sys.stdin, "buffer", None)  # None when tests swap in a StringIO
        text = decode_source(buf.read(), "<stdin>") if buf is not None else sys.stdin.read()
        return "<stdin>", text
    try:
        return path, read_source(path)
    except OSError as e:
        raise _UsageError(f"cannot read {path}: {e.strerror or e}") from None


def _write_output(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise _UsageError(f"cannot write {path}: {e.strerror or e}") from None


# -- the command table and main -------------------------------------------------------------

# name -> (declare arguments, run, one-line help)
COMMANDS = {
    "opt": (_args_opt, cmd_opt, "run passes over textual IR (.tgir) and print the result"),
}


def _commands() -> dict:
    from irc.commands import MODEL_COMMANDS

    return {**MODEL_COMMANDS, **COMMANDS}


class _UsageError(Exception):
    """A mistake on the command line (missing file, bad pipeline): exit 1, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irc", description="irc: a tensor-graph compiler (.tg -> tg IR -> LLVM / OpenCL)"
    )
    parser.add_argument("--version", action="version", version=f"irc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (declare, run, help_text) in _commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        declare(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Optional[list] = None) -> int:
    """Entry point of the `irc` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    from irc.commands import UsageError
    from irc.ir.errors import CompileError
    from irc.passes import PassCrash, PipelineError

    try:
        return int(args.run(args) or 0)
    except CompileError as e:
        _print_error(e.format())
        return 1
    except (_UsageError, UsageError, PipelineError) as e:
        _print_error(f"irc: error: {e}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `irc opt big.tgir | head`: the reader left; not an error of ours.
        _silence_stdout()
        return 1
    except Exception as e:
        if _debug():
            import traceback

            traceback.print_exc()
        where, cause = (
            (f" in pass '{e.pass_name}'", e.error) if isinstance(e, PassCrash) else ("", e)
        )
        _print_error(f"internal compiler error{where}: {type(cause).__name__}: {cause}")
        if not _debug():
            _print_error(f"  hint: {_BUG_HINT} (IRC_DEBUG=1 shows the traceback)")
        return 2


def _print_error(text: str) -> None:
    sys.stdout.flush()  # keep stdout output before the error when both go to one pipe
    print(text, file=sys.stderr)


def _silence_stdout() -> None:
    # Python flushes stdout at exit and would complain about the closed pipe again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
