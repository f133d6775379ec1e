"""A worker process for the mutation fuzzer (tests/hostile/test_fuzz_mutations.py).

Reads one JSON request per line on stdin: {"src": text} or {"b64": bytes in base64},
compiles it with irc.loads on the interpreter, then (when that compiled) on the cpu
backend, and writes one JSON line: {"kind": "ok" | "compile_error" | "exception",
"detail": ...}. A crash (a signal) or a hang is seen by the parent, which owns the
time bound and restarts the worker. Runs as a script; imports irc only.
"""

import base64
import json
import sys
import traceback


def main() -> None:
    import irc
    from irc.ir.errors import CompileError

    backends = sys.argv[1].split(",") if len(sys.argv) > 1 else ["interp", "cpu"]
    for line in sys.stdin:
        req = json.loads(line)
        src = base64.b64decode(req["b64"]) if "b64" in req else req["src"]
        kind, detail = "ok", ""
        for backend in backends:
            try:
                irc.loads(src, backend=backend, filename="fuzz.tg")
            except CompileError as e:
                kind, detail = "compile_error", e.format()
                if e.loc is None or e.loc.file != "fuzz.tg":
                    kind, detail = "exception", "CompileError without a location: " + detail
                break
            except Exception:
                kind, detail = "exception", f"{backend}: {traceback.format_exc()}"
                break
        sys.stdout.write(json.dumps({"kind": kind, "detail": detail}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
