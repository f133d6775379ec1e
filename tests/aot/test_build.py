"""`irc build` (irc/build.py, runtime/llvm/aot.py): the examples as C libraries,
driven by a small C program compiled here with the system C compiler, against the
JIT (backend "cpu") in this process.

- predictions on the test digits after loading the checkpoint of `irc train --save`
  are identical to the JIT's;
- `train` called from C matches the JIT's parameters (a few batches here; one
  full epoch in the slow tests);
- the argument checks, the .npz reader's errors, separate contexts on separate
  threads, --static, --no-blas, --fn, --weights and --target aarch64.

Matrix products: the library calls cblas_sgemm; the C programs here link it to the
OpenBLAS the JIT uses (scipy-openblas32, whose symbols are prefixed) through a
three-line shim, so both sides run the same BLAS and agree bit for bit.

Skipped, with the reason, where there is no C compiler.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

import irc
from irc.cli import main as irc_main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")

CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
pytestmark = pytest.mark.skipif(
    CC is None, reason="irc build tests need a C compiler (cc, gcc or clang; or set CC)"
)

SHIM = r"""
/* cblas_* -> the prefixed OpenBLAS of scipy-openblas32 (what the JIT calls) */
void scipy_cblas_sgemm(int, int, int, int, int, int, float, const float *, int, const float *,
                       int, float, float *, int);
void scipy_cblas_dgemm(int, int, int, int, int, int, double, const double *, int,
                       const double *, int, double, double *, int);
void scipy_openblas_set_num_threads(int);
__attribute__((constructor)) static void one_thread(void) { scipy_openblas_set_num_threads(1); }
void cblas_sgemm(int o, int ta, int tb, int m, int n, int k, float al, const float *a, int lda,
                 const float *b, int ldb, float be, float *c, int ldc) {
    scipy_cblas_sgemm(o, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc);
}
void cblas_dgemm(int o, int ta, int tb, int m, int n, int k, double al, const double *a, int lda,
                 const double *b, int ldb, double be, double *c, int ldc) {
    scipy_cblas_dgemm(o, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc);
}
"""

# A driver for the digits models (x: f32[N, 64], y: i32[N]); @M is the model name.
DRIVER = r"""
#include "@M.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *slurp(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(3); }
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(*n + 1);
    if (fread(p, 1, *n, f) != (size_t)*n) exit(3);
    fclose(f);
    return p;
}

static void check(int rc, const char *what) {
    if (rc != IRC_@U_OK) { fprintf(stderr, "%s: %d: %s\n", what, rc, irc_@M_last_error()); exit(4); }
}

static irc_@M *ctx_with(const char *ckpt, int threads) {
    irc_@M *c = irc_@M_new();
    if (!c) exit(5);
    if (strcmp(ckpt, "-") != 0) check(irc_@M_load_weights(c, ckpt), "load_weights");
    check(irc_@M_set_threads(c, threads), "set_threads");
    return c;
}

struct job { const char *ckpt; const float *x; long n; int *out; };

static void *predict_job(void *arg) {
    struct job *j = arg;
    irc_@M *c = ctx_with(j->ckpt, 1);
    for (int rep = 0; rep < 20; rep++)
        check(irc_@M_predict(c, j->n, j->x, j->n * 64, j->out, j->n), "predict");
    irc_@M_free(c);
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argv[1];
    if (!strcmp(mode, "predict")) { /* predict CKPT X.bin THREADS OUT.bin */
        long nb;
        float *x = slurp(argv[3], &nb);
        long n = nb / (64 * 4);
        irc_@M *c = ctx_with(argv[2], atoi(argv[4]));
        int *out = malloc(n * 4);
        check(irc_@M_predict(c, n, x, n * 64, out, n), "predict");
        FILE *f = fopen(argv[5], "wb");
        fwrite(out, 4, n, f);
        fclose(f);
        irc_@M_free(c);
        return 0;
    }
    if (!strcmp(mode, "train")) { /* train CKPT X.bin Y.bin BATCH STEPS LR OUT.bin */
        long nb, yb;
        float *x = slurp(argv[3], &nb);
        int *y = slurp(argv[4], &yb);
        long batch = atol(argv[5]), steps = atol(argv[6]);
        float lr = (float)atof(argv[7]);
        irc_@M *c = ctx_with(argv[2], 1);
        FILE *f = fopen(argv[8], "wb");
        for (long s = 0; s < steps; s++) {
            float loss;
            check(irc_@M_train(c, batch, x + s * batch * 64, batch * 64, y + s * batch, batch, lr, &loss),
                  "train");
            fwrite(&loss, 4, 1, f);
        }
@DUMP
        fclose(f);
        if (argc > 9) check(irc_@M_save_weights(c, argv[9]), "save_weights");
        irc_@M_free(c);
        return 0;
    }
    if (!strcmp(mode, "threads")) { /* threads CKPT X.bin OUT.bin: 4 contexts on 4 threads */
        long nb;
        float *x = slurp(argv[3], &nb);
        long n = nb / (64 * 4);
        pthread_t t[4];
        struct job jobs[4];
        for (int k = 0; k < 4; k++) {
            jobs[k] = (struct job){argv[2], x, n, malloc(n * 4)};
            pthread_create(&t[k], NULL, predict_job, &jobs[k]);
        }
        FILE *f = fopen(argv[4], "wb");
        for (int k = 0; k < 4; k++) {
            pthread_join(t[k], NULL);
            fwrite(jobs[k].out, 4, n, f);
        }
        fclose(f);
        return 0;
    }
    if (!strcmp(mode, "errors")) { /* errors CKPT: every check, one line each */
        irc_@M *c = irc_@M_new();
        float x[2 * 64] = {0};
        int out[2];
        int y[2] = {0, 11};
        float loss;
        printf("%d %s\n", irc_@M_predict(c, 2, x, 2 * 64 - 1, out, 2), irc_@M_last_error());
        printf("%d %s\n", irc_@M_predict(c, 2, x, 2 * 64, out, 3), irc_@M_last_error());
        printf("%d %s\n", irc_@M_predict(c, -1, x, 0, out, 0), irc_@M_last_error());
        printf("%d %s\n", irc_@M_predict(c, 2, NULL, 2 * 64, out, 2), irc_@M_last_error());
        printf("%d %s\n", irc_@M_train(c, 2, x, 128, y, 2, 0.1f, NULL), irc_@M_last_error());
        printf("%d %s\n", irc_@M_train(c, 2, x, 128, y, 2, 0.1f, &loss), irc_@M_last_error());
        printf("%d %s\n", irc_@M_predict(c, 2, x, 2 * 64, out, 2), irc_@M_last_error());
        printf("%d %s\n", irc_@M_set_threads(c, 0), irc_@M_last_error());
        printf("%d %s\n", irc_@M_load_weights(c, argv[2]), irc_@M_last_error());
        printf("%d %s\n", irc_@M_load_weights(c, "/nonexistent/w.npz"), irc_@M_last_error());
        irc_@M_free(c);
        return 0;
    }
    return 2;
}
"""


def _driver(model: str, globals_: list) -> str:
    dump = []
    for name, size, ctype in globals_:
        dump.append(f"        {{ {ctype} *buf = malloc({size} * sizeof({ctype}) + 1);")
        dump.append(f'          check(irc_@M_get_{name}(c, buf, {size}), "get {name}");')
        dump.append(f"          fwrite(buf, sizeof({ctype}), {size}, f); free(buf); }}")
    return (
        DRIVER.replace("@DUMP", "\n".join(dump)).replace("@M", model).replace("@U", model.upper())
    )


@pytest.fixture(scope="module")
def blas_shim(tmp_path_factory):
    import scipy_openblas32

    d = tmp_path_factory.mktemp("shim")
    src = d / "shim.c"
    src.write_text(SHIM)
    obj = d / "shim.o"
    subprocess.run([CC, "-O2", "-fPIC", "-c", str(src), "-o", str(obj)], check=True)
    libdir = scipy_openblas32.get_lib_dir()
    return [str(obj), f"-L{libdir}", "-lscipy_openblas", f"-Wl,-rpath,{libdir}"]


@pytest.fixture(scope="module")
def digits():
    from irc.train import builtin_dataset

    return builtin_dataset("digits")


class Built:
    """An example built into a library and a driver program linked against it."""

    def __init__(self, example, out, blas_shim, extra=(), static=False):
        self.example = example
        self.path = os.path.join(EXAMPLES, example + ".tg")
        self.dir = str(out)
        args = ["build", self.path, "-o", self.dir, *extra] + (["--static"] if static else [])
        assert irc_main(args) == 0
        self.jit = irc.load(self.path, backend="cpu")
        self.globals = list(self.jit._backend.global_names)
        sizes = [(n, self.jit._backend.state[n].size, "float") for n in self.globals]
        drv = os.path.join(self.dir, "driver.c")
        with open(drv, "w") as f:
            f.write(_driver(example, sizes))
        self.exe = os.path.join(self.dir, "driver")
        lib = (
            [os.path.join(self.dir, f"lib{example}.a")]
            if static
            else [f"-L{self.dir}", f"-l{example}", f"-Wl,-rpath,{self.dir}"]
        )
        blas = [] if "--no-blas" in extra else blas_shim
        r = subprocess.run(
            [CC, "-O2", "-I", self.dir, drv, "-o", self.exe, *lib, *blas, "-lm", "-lpthread"],
            check=False,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr

    def run(self, *args, check=True):
        r = subprocess.run(
            [self.exe, *map(str, args)], check=False, capture_output=True, text=True, timeout=300
        )
        if check:
            assert r.returncode == 0, r.stderr
        return r


def _checkpoint(example, path, tmp_path):
    """`irc train EXAMPLE --epochs 1 --save CKPT` (the cpu backend)."""
    ckpt = str(tmp_path / f"{example}.npz")
    assert (
        irc_main(
            [
                "train",
                path,
                "--epochs",
                "1",
                "--batch",
                "64",
                "--save",
                ckpt,
                "--backend",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    return ckpt


def _predict_same(b: Built, digits, ckpt, tmp_path, threads=1):
    x = np.ascontiguousarray(digits.test["x"], np.float32)
    xf = tmp_path / "x.bin"
    x.tofile(xf)
    out = tmp_path / "pred.bin"
    b.run("predict", ckpt, xf, threads, out)
    got = np.fromfile(out, np.int32)
    b.jit.restore(ckpt)
    want = b.jit.predict(x)
    np.testing.assert_array_equal(got, want)
    return got


def _train_same(b: Built, digits, tmp_path, batch, steps, lr=0.05, ckpt="-", exact=True):
    x = np.ascontiguousarray(digits.train["x"][: batch * steps], np.float32)
    y = np.ascontiguousarray(digits.train["y"][: batch * steps], np.int32)
    assert len(x) == batch * steps
    x.tofile(tmp_path / "tx.bin")
    y.tofile(tmp_path / "ty.bin")
    out = tmp_path / "train.bin"
    saved = tmp_path / "trained.npz"
    b.run("train", ckpt, tmp_path / "tx.bin", tmp_path / "ty.bin", batch, steps, lr, out, saved)
    data = np.fromfile(out, np.float32)
    jit = irc.load(b.path, backend="cpu")  # fresh: the initial values, as irc_new()
    if ckpt != "-":
        jit.restore(ckpt)
    losses = [
        float(jit.train(x[k * batch : (k + 1) * batch], y[k * batch : (k + 1) * batch], lr=lr))
        for k in range(steps)
    ]
    got_losses, rest = data[:steps], data[steps:]
    cmp = (
        np.testing.assert_array_equal
        if exact
        else (lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5))
    )
    cmp(got_losses, np.array(losses, np.float32))
    off = 0
    for n in b.globals:
        want = jit[n]
        got = rest[off : off + want.size].reshape(want.shape)
        off += want.size
        cmp(got, want)
    assert off == rest.size
    # irc_<model>_save_weights: what numpy and CompiledModule.restore read back
    with np.load(saved) as z:
        assert sorted(z.files) == sorted(b.globals)
        for n in b.globals:
            assert z[n].dtype == jit[n].dtype and z[n].shape == jit[n].shape
            cmp(z[n], jit[n])
    if "predict" in b.jit.functions:  # and the library's own reader takes it
        assert b.run("errors", saved).stdout.splitlines()[8] == "0 "
    again = irc.load(b.path, backend="cpu")
    again.restore(saved)
    for n in b.globals:
        cmp(again[n], jit[n])


@pytest.fixture(scope="module")
def mlp_ckpt(tmp_path_factory):
    return _checkpoint("mlp", os.path.join(EXAMPLES, "mlp.tg"), tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def mlp_lib(tmp_path_factory, blas_shim):
    return Built("mlp", tmp_path_factory.mktemp("mlp"), blas_shim)


@pytest.mark.parametrize("example", ["logreg", "mlp", "lenet"])
def test_example_predicts_and_trains_like_the_jit(example, tmp_path, blas_shim, digits, request):
    if example == "mlp":
        b = request.getfixturevalue("mlp_lib")
        ckpt = request.getfixturevalue("mlp_ckpt")
    else:
        b = Built(example, tmp_path / "lib", blas_shim)
        ckpt = _checkpoint(example, b.path, tmp_path)
    assert sorted(os.listdir(b.dir)) == sorted(
        ["README", f"{example}.h", f"{example}_api.c", f"lib{example}.so", "driver.c", "driver"]
    )
    _predict_same(b, digits, ckpt, tmp_path)
    _train_same(b, digits, tmp_path, batch=16, steps=4, ckpt=ckpt)


@pytest.mark.slow
@pytest.mark.parametrize("example", ["logreg", "mlp", "lenet"])
def test_example_one_epoch_of_train_from_c(example, tmp_path, blas_shim, digits):
    """One full epoch (every training batch, in order) from C and in the JIT."""
    b = Built(example, tmp_path / "lib", blas_shim)
    batch = 16
    _train_same(b, digits, tmp_path, batch=batch, steps=digits.n_train // batch)
    ckpt = _checkpoint(example, b.path, tmp_path)
    _predict_same(b, digits, ckpt, tmp_path, threads=2)


def test_errors_threads_and_weights(tmp_path, mlp_lib, mlp_ckpt, digits):
    b, ckpt = mlp_lib, mlp_ckpt
    lines = b.run("errors", ckpt).stdout.splitlines()
    expect = [
        "1 irc_mlp_predict: the argument x is f32[N, 64] = 128 elements, N = 2; got x_len = 127",
        "1 irc_mlp_predict: the result out0 is i32[N] = 2 elements, N = 2; got out0_len = 3",
        "1 irc_mlp_predict: the dim N = -1 is out of range [0, 2147483648)",
        "1 irc_mlp_predict: x is NULL",
        "1 irc_mlp_train: the result out0 is NULL",
        "2 irc_mlp_train: tg.crossentropy_logits: label out of range [0, 10)",
        "0 ",
        "1 irc_mlp_set_threads: n must be >= 1, got 0",
        "0 ",
        "4 /nonexistent/w.npz: cannot open",
    ]
    assert [ln.rstrip() for ln in lines] == [e.rstrip() for e in expect]

    # separate contexts on 4 threads at once; the pool with 2 threads in one context
    x = np.ascontiguousarray(digits.test["x"], np.float32)
    x.tofile(tmp_path / "x.bin")
    b.run("threads", ckpt, tmp_path / "x.bin", tmp_path / "t.bin")
    b.jit.restore(ckpt)
    want = b.jit.predict(x)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "t.bin", np.int32), np.tile(want, 4))
    _predict_same(b, digits, ckpt, tmp_path, threads=2)

    # checkpoints that do not fit: a message, and the context keeps its values
    good = dict(np.load(ckpt))
    cases = {
        "missing": (
            {k: v for k, v in good.items() if k != "b2"},
            "has no value for shared variable 'b2'",
        ),
        "shape": (
            dict(good, W2=np.zeros((10, 64), np.float32)),
            "'W2' must be f32[64, 10], the file has shape [10, 64]",
        ),
        "dtype": (
            dict(good, b1=np.zeros(64, np.float64)),
            "'b1' must be f32[64] (dtype <f4), the file has '<f8'",
        ),
        "fortran": (dict(good, W1=np.asfortranarray(good["W1"].reshape(64, 64))), "Fortran order"),
    }
    for name, (arrays, msg) in cases.items():
        p = tmp_path / f"{name}.npz"
        np.savez(p, **arrays)
        r = b.run("errors", p).stdout.splitlines()[8]
        assert r.startswith("4 ") and msg in r, (name, r)
    p = tmp_path / "compressed.npz"
    np.savez_compressed(p, **good)
    r = b.run("errors", p).stdout.splitlines()[8]
    assert r.startswith("4 ") and "compressed" in r, r
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all" * 3)
    r = b.run("errors", tmp_path / "junk.npz").stdout.splitlines()[8]
    assert r.startswith("4 ") and "not an .npz" in r, r
    # extra arrays in the file are ignored (a checkpoint of a bigger model)
    np.savez(tmp_path / "extra.npz", other=np.ones(3), **good)
    assert b.run("errors", tmp_path / "extra.npz").stdout.splitlines()[8] == "0 "


def test_static_with_weights(tmp_path, blas_shim, digits, mlp_ckpt):
    """--static: the driver links lib<model>.a; --weights bakes the checkpoint in,
    so irc_new() starts from it."""
    b = Built("mlp", tmp_path / "static", blas_shim, static=True, extra=["--weights", mlp_ckpt])
    assert {"libmlp.a", "mlp.o", "libmlp.so"} <= set(os.listdir(b.dir))
    x = np.ascontiguousarray(digits.test["x"], np.float32)
    x.tofile(tmp_path / "x.bin")
    b.run("predict", "-", tmp_path / "x.bin", 1, tmp_path / "p.bin")
    b.jit.restore(mlp_ckpt)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "p.bin", np.int32), b.jit.predict(x))


def test_no_blas(tmp_path, blas_shim, digits, mlp_ckpt):
    """--no-blas: no BLAS symbol at all; irc's own GEMM sums in another order."""
    nb = Built("mlp", tmp_path / "noblas", blas_shim, extra=["--no-blas"])
    if shutil.which("nm"):
        undefined = subprocess.run(
            ["nm", "-D", "--undefined-only", os.path.join(nb.dir, "libmlp.so")],
            check=False,
            capture_output=True,
            text=True,
        ).stdout
        assert "cblas" not in undefined and "pthread_create" in undefined
    _predict_same(nb, digits, mlp_ckpt, tmp_path)
    _train_same(nb, digits, tmp_path, batch=32, steps=3, exact=False)


def test_cross_target_object(tmp_path):
    """--target aarch64: an AArch64 ELF object of the model's code and the C source;
    --fn exports only the functions named."""
    out = tmp_path / "arm"
    assert (
        irc_main(
            [
                "build",
                os.path.join(EXAMPLES, "mlp.tg"),
                "--target",
                "aarch64-unknown-linux-gnu",
                "--fn",
                "predict",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    header = (out / "mlp.h").read_text()
    assert "irc_mlp_predict(" in header and "irc_mlp_train(" not in header
    data = (out / "mlp.o").read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == 183  # EM_AARCH64
    assert (out / "mlp_api.c").exists() and (out / "mlp.h").exists()
    assert "aarch64" in (out / "README").read_text()


def test_cli_errors(tmp_path, capsys):
    mlp = os.path.join(EXAMPLES, "mlp.tg")
    assert irc_main(["build", mlp, "--fn", "nope", "-o", str(tmp_path / "a")]) == 1
    assert "has no entry function 'nope' (functions: predict, train)" in capsys.readouterr().err
    assert irc_main(["build", mlp, "--target", "nonsense-triple", "-o", str(tmp_path / "b")]) == 1
    assert "unknown target 'nonsense-triple'" in capsys.readouterr().err
    np.savez(tmp_path / "w.npz", W1=np.zeros((3, 3), np.float32))
    assert (
        irc_main(["build", mlp, "--weights", str(tmp_path / "w.npz"), "-o", str(tmp_path / "c")])
        == 1
    )
    assert "'W1' must be f32[64, 64], got shape [3, 3]" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert irc_main(["build", mlp, "-o", str(tmp_path / "file")]) == 1
    assert "cannot create" in capsys.readouterr().err
    bad = tmp_path / "bad.tg"
    bad.write_text("fn f(x: f32[N]) -> f32[N] {\n    return x +\n}\n")
    assert irc_main(["build", str(bad), "-o", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "bad.tg:" in err and "Traceback" not in err, err


SIGNATURES_TG = """
shared count: i64 = zeros()
fn stats(x: f32[T, B], flag: bool, k: i32) -> (f32, f32[B], i64) {
    count <- count + 1
    return sum(x) * cast(k, f32), mean(x, axis=0), count
}
fn flat(x: f32[T, B]) -> f32[T*B] { return reshape(x, [T*B]) * 2 }
"""

SIGNATURES_C = r"""
#include "sig.h"
#include <stdio.h>
int main(void) {
    irc_sig *c = irc_sig_new();
    float x[6] = {1, 2, 3, 4, 5, 6}, s, m[2], f[6];
    int64_t cnt;
    int rc = irc_sig_stats(c, 3, 2, x, 6, 1, 3, &s, m, 2, &cnt);
    printf("%d %g %g %g %lld\n", rc, s, m[0], m[1], (long long)cnt);
    rc = irc_sig_stats(c, 3, 2, x, 6, 0, 1, &s, m, 2, &cnt);
    printf("%d %lld\n", rc, (long long)cnt);
    rc = irc_sig_flat(c, 3, 2, x, 6, f, 6);
    printf("%d %g %g\n", rc, f[0], f[5]);
    rc = irc_sig_flat(c, 3, 2, x, 6, f, 5);
    printf("%d %s\n", rc, irc_sig_last_error());
    int64_t v;
    rc = irc_sig_get_count(c, &v, IRC_SIG_COUNT_SIZE);
    printf("%d %lld\n", rc, (long long)v);
    irc_sig_free(c);
    return 0;
}
"""


def test_other_signatures(tmp_path):
    """Scalars in and out, bool and i32 arguments, several results, an i64 shared
    variable and a dim expression (f32[T*B]), against the JIT."""
    src = tmp_path / "sig.tg"
    src.write_text(SIGNATURES_TG)
    out = tmp_path / "lib"
    assert irc_main(["build", str(src), "-o", str(out)]) == 0
    (out / "p.c").write_text(SIGNATURES_C)
    r = subprocess.run(
        [
            CC,
            "-Wall",
            "-I",
            str(out),
            str(out / "p.c"),
            f"-L{out}",
            "-lsig",
            f"-Wl,-rpath,{out}",
            "-o",
            str(out / "p"),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    lines = subprocess.run([str(out / "p")], check=True, capture_output=True, text=True).stdout
    jit = irc.load(str(src), backend="cpu")
    x = np.arange(1, 7, dtype=np.float32).reshape(3, 2)
    s, m, cnt = jit.stats(x, True, 3)
    _, _, cnt2 = jit.stats(x, False, 1)
    f = jit.flat(x)
    assert lines.splitlines() == [
        f"0 {float(s):g} {m[0]:g} {m[1]:g} {int(cnt)}",
        f"0 {int(cnt2)}",
        f"0 {f[0]:g} {f[5]:g}",
        "1 irc_sig_flat: the result out0 is f32[B*T] = 6 elements, T = 3, B = 2; got out0_len = 5",
        f"0 {int(jit['count'])}",
    ]
