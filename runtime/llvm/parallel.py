"""Work split over the thread pool of threads.py, in generated LLVM IR: matrix
products as BLAS calls (scipy_cblas_sgemm / dgemm, bound by blas.py), cut into
blocks of C whose size depends on the shape only when large; and __irc_parfor,
which runs a kernel's thunk on chunks of its range. Chunks and blocks never
depend on the thread count, so results do not either.

Imports llvmlite and this package's scalar.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llvmlite import ir

from .scalar import I1, I8, I32, I64, LLTYPE, PTR, SIZE, VOID, dtype_name, floordiv

if TYPE_CHECKING:
    from .codegen import Gen, ModuleGen

MAX_THREADS = 16

GEMM_PAR_THRESHOLD = 1 << 18  # multiply-adds below which a product stays on one thread


def _gemm_fn(g: Gen, dn):
    ty = LLTYPE[dn]
    name = "scipy_cblas_sgemm" if dn == "f32" else "scipy_cblas_dgemm"
    return g.mg.decl(name, VOID, [I32, I32, I32, I32, I32, I32, ty, PTR, I32, PTR, I32, ty, PTR, I32])


def _gemm_args_type(dn):
    ty = LLTYPE[dn]
    # ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
    return ir.LiteralStructType([I32, I32, I32, I32, I32, ty, PTR, I32, PTR, I32, ty, PTR, I32])


def _gemm_thunk(g: Gen, dn):
    """void* thunk(ptr args): one BLAS call from a packed argument struct."""
    name = f"__irc_gemm_thunk_{dn}"
    fn = g.mg.m.globals.get(name)
    if fn is None:
        st = _gemm_args_type(dn)
        fn = ir.Function(g.mg.m, ir.FunctionType(PTR, [PTR]), name)
        fn.linkage = "internal"
        tb = ir.IRBuilder(fn.append_basic_block("e"))
        z = ir.Constant(I32, 0)
        vals = [tb.load(tb.gep(fn.args[0], [z, ir.Constant(I32, k)], source_etype=st), typ=t)
                for k, t in enumerate(st.elements)]
        tb.call(_gemm_fn(g, dn), [ir.Constant(I32, 101)] + vals)
        tb.ret(ir.Constant(PTR, None))
    return fn


def h_gemm(g: Gen, op):
    """A mem.gemm. In a function that runs on the calling thread with the pool
    at hand (an entry, a segment, a launcher: g.nthreads), one call of a helper
    per dtype and kind (_gemm_call), so that a long entry holds one call per
    product; elsewhere (inside a kernel) the BLAS call inline."""
    A, B, C, M, N, K, lda, ldb, ldc, oa, ob, oc = op.operands[:12]
    dn = dtype_name(C.type)
    ty = LLTYPE[dn]
    b = g.b
    trans_a, trans_b = bool(op.attrs.get("trans_a")), bool(op.attrs.get("trans_b"))
    beta_v = float(op.attrs.get("beta", 0.0))
    alpha = ir.Constant(ty, float(op.attrs.get("alpha", 1.0)))
    if len(op.operands) > 12:  # a run-time factor of alpha
        alpha = b.fmul(alpha, g.vmap[op.operands[12]])
    ta = ir.Constant(I32, 112 if trans_a else 111)
    tb = ir.Constant(I32, 112 if trans_b else 111)
    beta = ir.Constant(ty, beta_v)
    vals = [g.vmap[v] for v in (A, B, C, M, N, K, lda, ldb, ldc, oa, ob, oc)]
    if getattr(g, "nthreads", None) is None:
        _gemm_body(g.mg, b, dn, None, ta, tb, alpha, beta, beta_v == 0.0, vals)
        return
    b.call(_gemm_call(g.mg, dn, beta_v == 0.0), [g.nthreads, ta, tb, alpha, beta] + vals)


def _gemm_call(mg: ModuleGen, dn, beta0: bool):
    """void __irc_gemm_call_<dn>[_b0](i64 nthreads, i32 ta, i32 tb, alpha, beta, ptr A,
    ptr B, ptr C, i64 M, N, K, lda, ldb, ldc, oa, ob, oc): a mem.gemm of an entry
    (glue: jit.py compiles __irc_gemm_* without optimisation)."""
    name = f"__irc_gemm_call_{dn}" + ("_b0" if beta0 else "")
    fn = mg.m.globals.get(name)
    if fn is not None:
        return fn
    ty = LLTYPE[dn]
    fn = ir.Function(mg.m, ir.FunctionType(VOID, [I64, I32, I32, ty, ty, PTR, PTR, PTR] + [I64] * 9), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    b = ir.IRBuilder(fn.append_basic_block("e"))
    nthreads, ta, tb, alpha, beta = fn.args[:5]
    _gemm_body(mg, b, dn, nthreads, ta, tb, alpha, beta, beta0, list(fn.args[5:]))
    b.ret_void()
    return fn


def _gemm_body(mg, b, dn, nthreads, ta, tb, alpha, beta, beta_zero: bool, vals):
    """The BLAS call of a product (C = alpha A B + beta C at the offsets; ta, tb
    the i32 transpose codes), skipped when C is empty; with K == 0 and a beta
    known to be 0 (beta_zero), C is zeroed. nthreads None: one BLAS call here,
    else the pool's helper splits it."""
    A, B, C, M, N, K, lda, ldb, ldc, oa, ob, oc = vals
    ty = LLTYPE[dn]
    fn = _gemm_fn(_FnCtx(mg, None), dn)

    def i32(v):
        return b.trunc(v, I32)

    def at(buf, off):
        return b.gep(buf, [off], inbounds=True, source_etype=ty)

    # BLAS wants ld >= max(1, cols); a zero-sized product has nothing to do.
    nonempty = b.and_(b.icmp_signed(">", M, ir.Constant(I64, 0)),
                      b.icmp_signed(">", N, ir.Constant(I64, 0)))

    def ld(v):
        return b.select(b.icmp_signed("<", i32(v), ir.Constant(I32, 1)), ir.Constant(I32, 1), i32(v))

    with b.if_then(nonempty):
        kpos = b.icmp_signed(">", K, ir.Constant(I64, 0))
        with b.if_else(kpos) as (then, other):
            with then:
                args = [ta, tb, i32(M), i32(N), i32(K), alpha, at(A, oa), ld(lda), at(B, ob), ld(ldb), beta,
                        at(C, oc), ld(ldc)]
                if nthreads is None:
                    b.call(fn, [ir.Constant(I32, 101)] + args)
                else:
                    b.call(_gemm_helper(mg, dn), [nthreads] + args)
            with other:
                if beta_zero:
                    # K == 0: C = 0 (rows are contiguous: ldc == N in our lowering)
                    z = mg.decl("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
                    nb = b.mul(b.mul(M, N), ir.Constant(I64, SIZE[dn]))
                    b.call(z, [at(C, oc), ir.Constant(I8, 0), nb, ir.Constant(I1, 0)])


class _FnCtx:
    """The little of Gen that helper-function builders need."""

    def __init__(self, mg, fn):
        self.mg = mg
        self.fn = fn


GEMM_BLOCK = 64  # rows (or columns) of C per BLAS call when a product is split


def _gemm_range_thunk(mg: ModuleGen, dn):
    """void* thunk(ptr r), r = {ptr blocks, i64 first, i64 last}: the BLAS calls of
    blocks [first, last), one after the other."""
    name = f"__irc_gemm_range_{dn}"
    fn = mg.m.globals.get(name)
    if fn is not None:
        return fn
    st = _gemm_args_type(dn)
    rt = ir.LiteralStructType([PTR, I64, I64])
    fn = ir.Function(mg.m, ir.FunctionType(PTR, [PTR]), name)
    fn.linkage = "internal"
    e = fn.append_basic_block("e")
    loop = fn.append_basic_block("loop")
    done = fn.append_basic_block("done")
    b = ir.IRBuilder(e)
    z = ir.Constant(I32, 0)
    r = fn.args[0]
    blocks = b.load(b.gep(r, [z, z], source_etype=rt), typ=PTR)
    first = b.load(b.gep(r, [z, ir.Constant(I32, 1)], source_etype=rt), typ=I64)
    last = b.load(b.gep(r, [z, ir.Constant(I32, 2)], source_etype=rt), typ=I64)
    b.cbranch(b.icmp_signed("<", first, last), loop, done)
    b.position_at_end(loop)
    k = b.phi(I64)
    k.add_incoming(first, e)
    b.call(_gemm_thunk(_FnCtx(mg, fn), dn), [b.gep(blocks, [k], source_etype=st)])
    k2 = b.add(k, ir.Constant(I64, 1))
    k.add_incoming(k2, loop)
    b.cbranch(b.icmp_signed("<", k2, last), loop, done)
    b.position_at_end(done)
    b.ret(ir.Constant(PTR, None))
    return fn


def _gemm_helper(mg: ModuleGen, dn):
    """void __irc_gemm_<dn>(i64 nthreads, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc).

    A product of at least GEMM_PAR_THRESHOLD multiply-adds is cut into blocks of
    GEMM_BLOCK rows of C (columns when C is wider than tall; at most MAX_THREADS
    blocks), one BLAS call each over the whole K. The blocks depend only on the
    shape, never on the thread count, so neither do the results; threads (ctx)
    take contiguous runs of blocks. OpenBLAS itself runs single-threaded."""
    name = f"__irc_gemm_{dn}"
    fn = mg.m.globals.get(name)
    if fn is not None:
        return fn
    ty = LLTYPE[dn]
    st = _gemm_args_type(dn)
    fn = ir.Function(mg.m, ir.FunctionType(VOID, [I64] + list(st.elements)), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    g = _FnCtx(mg, fn)
    b = ir.IRBuilder(fn.append_basic_block("e"))
    nthreads = fn.args[0]
    args = list(fn.args[1:])
    ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc = args
    blas = _gemm_fn(g, dn)
    M64, N64, K64 = (b.sext(v, I64) for v in (M, N, K))
    rows = b.icmp_signed(">=", M64, N64)
    dim = b.select(rows, M64, N64)
    work = b.mul(b.mul(M64, N64), K64)
    # block size: GEMM_BLOCK, or larger (16-aligned) to keep at most MAX_THREADS blocks
    per = floordiv(b, b.add(dim, ir.Constant(I64, MAX_THREADS - 1)), ir.Constant(I64, MAX_THREADS))
    per = b.and_(b.add(per, ir.Constant(I64, 15)), ir.Constant(I64, -16))
    per = b.select(b.icmp_signed("<", per, ir.Constant(I64, GEMM_BLOCK)), ir.Constant(I64, GEMM_BLOCK), per)
    nblk = floordiv(b, b.add(dim, b.sub(per, ir.Constant(I64, 1))), per)
    split = b.and_(b.icmp_signed(">=", work, ir.Constant(I64, GEMM_PAR_THRESHOLD)),
                   b.icmp_signed(">", nblk, ir.Constant(I64, 1)))
    one_bb = fn.append_basic_block("one")
    split_bb = fn.append_basic_block("split")
    b.cbranch(split, split_bb, one_bb)
    ob = ir.IRBuilder(one_bb)
    ob.call(blas, [ir.Constant(I32, 101)] + args)
    ob.ret_void()
    b.position_at_end(split_bb)
    arr_t = ir.ArrayType(st, MAX_THREADS)
    rt = ir.LiteralStructType([PTR, I64, I64])
    rarr_t = ir.ArrayType(rt, MAX_THREADS)
    blocks = opaque_alloca(b, arr_t)
    ranges = opaque_alloca(b, rarr_t)
    trans_a = b.icmp_signed("==", ta, ir.Constant(I32, 112))
    trans_b = b.icmp_signed("==", tb, ir.Constant(I32, 112))
    z = ir.Constant(I32, 0)
    lda64, ldb64, ldc64 = (b.sext(v, I64) for v in (lda, ldb, ldc))
    # 1. the blocks
    pre = b.block
    loop = fn.append_basic_block("blocks")
    after = fn.append_basic_block("blocked")
    b.branch(loop)
    b.position_at_end(loop)
    t = b.phi(I64)
    t.add_incoming(ir.Constant(I64, 0), pre)
    lo = b.mul(t, per)
    hi = b.add(lo, per)
    hi = b.select(b.icmp_signed(">", hi, dim), dim, hi)
    cnt = b.trunc(b.sub(hi, lo), I32)
    a_off = b.select(rows, b.select(trans_a, lo, b.mul(lo, lda64)), ir.Constant(I64, 0))
    b_off = b.select(rows, ir.Constant(I64, 0), b.select(trans_b, b.mul(lo, ldb64), lo))
    c_off = b.select(rows, b.mul(lo, ldc64), lo)
    vals = [ta, tb, b.select(rows, cnt, M), b.select(rows, N, cnt), K, alpha,
            b.gep(A, [a_off], source_etype=ty), lda, b.gep(B, [b_off], source_etype=ty), ldb, beta,
            b.gep(C, [c_off], source_etype=ty), ldc]
    p = b.gep(blocks, [ir.Constant(I64, 0), t], source_etype=arr_t)
    for k, v in enumerate(vals):
        b.store(v, b.gep(p, [z, ir.Constant(I32, k)], source_etype=st))
    t2 = b.add(t, ir.Constant(I64, 1))
    t.add_incoming(t2, loop)
    b.cbranch(b.icmp_signed("<", t2, nblk), loop, after)
    b.position_at_end(after)
    # 2. contiguous runs of blocks per thread; run 0 here
    nt = b.select(b.icmp_signed(">", nthreads, nblk), nblk, nthreads)
    nt = b.select(b.icmp_signed("<", nt, ir.Constant(I64, 1)), ir.Constant(I64, 1), nt)
    rthunk = _gemm_range_thunk(mg, dn)

    def rng(t):
        return b.gep(ranges, [ir.Constant(I64, 0), t], source_etype=rarr_t)

    pre = b.block
    fill = fn.append_basic_block("ranges")
    filled = fn.append_basic_block("filled")
    b.branch(fill)
    b.position_at_end(fill)
    t = b.phi(I64)
    t.add_incoming(ir.Constant(I64, 0), pre)
    r = rng(t)
    b.store(blocks, b.gep(r, [z, z], source_etype=rt))
    b.store(floordiv(b, b.mul(t, nblk), nt), b.gep(r, [z, ir.Constant(I32, 1)], source_etype=rt))
    b.store(floordiv(b, b.mul(b.add(t, ir.Constant(I64, 1)), nblk), nt),
            b.gep(r, [z, ir.Constant(I32, 2)], source_etype=rt))
    t2 = b.add(t, ir.Constant(I64, 1))
    t.add_incoming(t2, b.block)
    b.cbranch(b.icmp_signed("<", t2, nt), fill, filled)
    b.position_at_end(filled)
    b.call(_pool_run(mg), [rthunk, ranges, _sizeof(b, rt), nt])
    b.ret_void()
    return fn


def _pool_run(mg: ModuleGen):
    """void irc_pool_run(ptr task, ptr args, i64 stride, i64 n) (threads.py)."""
    return mg.decl("irc_pool_run", VOID, [ir.PointerType(ir.FunctionType(PTR, [PTR])), PTR, I64, I64])


def _sizeof(b, ty):
    return b.ptrtoint(b.gep(ir.Constant(PTR, None), [ir.Constant(I64, 1)], source_etype=ty), I64)


def parfor_helper(mg: ModuleGen):
    """i32 __irc_parfor(ptr thunk, ptr shared, i64 lo, i64 hi, i64 nthreads): run
    thunk on chunks {shared, lo_k, hi_k, status} of [lo, hi) (64-aligned when that
    keeps every chunk non-empty) on the thread pool, chunk 0 on this thread;
    returns the first non-zero status."""
    fn = mg.m.globals.get("__irc_parfor")
    if fn is not None:
        return fn
    tfn_ty = ir.FunctionType(PTR, [PTR])
    fn = ir.Function(mg.m, ir.FunctionType(I32, [ir.PointerType(tfn_ty), PTR, I64, I64, I64]), "__irc_parfor")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    thunk, shared, lo, hi, nthreads = fn.args
    b = ir.IRBuilder(fn.append_basic_block("e"))
    chunk_ty = ir.LiteralStructType([PTR, I64, I64, I32])
    arr_t = ir.ArrayType(chunk_ty, MAX_THREADS)
    chunks = opaque_alloca(b, arr_t)
    z = ir.Constant(I32, 0)
    n = b.sub(hi, lo)
    nt = b.select(b.icmp_signed(">", nthreads, ir.Constant(I64, MAX_THREADS)), ir.Constant(I64, MAX_THREADS), nthreads)
    nt = b.select(b.icmp_signed(">", nt, n), n, nt)
    per = floordiv(b, b.add(n, b.sub(nt, ir.Constant(I64, 1))), nt)
    per64 = b.and_(b.add(per, ir.Constant(I64, 63)), ir.Constant(I64, -64))
    use64 = b.icmp_signed("<", b.mul(per64, b.sub(nt, ir.Constant(I64, 1))), n)
    per = b.select(use64, per64, per)
    nblk = floordiv(b, b.add(n, b.sub(per, ir.Constant(I64, 1))), per)

    def chunk_ptr(t):
        return b.gep(chunks, [ir.Constant(I64, 0), t], source_etype=arr_t)

    pre = b.block
    loop = fn.append_basic_block("fill")
    after = fn.append_basic_block("filled")
    b.branch(loop)
    b.position_at_end(loop)
    t = b.phi(I64)
    t.add_incoming(ir.Constant(I64, 0), pre)
    c = chunk_ptr(t)
    clo = b.add(lo, b.mul(t, per))
    chi = b.add(clo, per)
    chi = b.select(b.icmp_signed(">", chi, hi), hi, chi)
    b.store(shared, b.gep(c, [z, z], source_etype=chunk_ty))
    b.store(clo, b.gep(c, [z, ir.Constant(I32, 1)], source_etype=chunk_ty))
    b.store(chi, b.gep(c, [z, ir.Constant(I32, 2)], source_etype=chunk_ty))
    b.store(ir.Constant(I32, 0), b.gep(c, [z, ir.Constant(I32, 3)], source_etype=chunk_ty))
    t2 = b.add(t, ir.Constant(I64, 1))
    t.add_incoming(t2, b.block)
    b.cbranch(b.icmp_signed("<", t2, nblk), loop, after)
    b.position_at_end(after)
    b.call(_pool_run(mg), [thunk, chunks, _sizeof(b, chunk_ty), nblk])
    # the first non-zero status
    sl = fn.append_basic_block("status")
    sdone = fn.append_basic_block("statusdone")
    pre = b.block
    b.branch(sl)
    b.position_at_end(sl)
    t = b.phi(I64)
    acc = b.phi(I32)
    t.add_incoming(ir.Constant(I64, 0), pre)
    acc.add_incoming(ir.Constant(I32, 0), pre)
    st = b.load(b.gep(chunk_ptr(t), [z, ir.Constant(I32, 3)], source_etype=chunk_ty), typ=I32)
    acc2 = b.select(b.icmp_signed("!=", acc, ir.Constant(I32, 0)), acc, st)
    t2 = b.add(t, ir.Constant(I64, 1))
    t.add_incoming(t2, b.block)
    acc.add_incoming(acc2, b.block)
    b.cbranch(b.icmp_signed("<", t2, nblk), sl, sdone)
    b.position_at_end(sdone)
    b.ret(acc2)
    return fn


def opaque_alloca(b, ty):
    """An alloca whose value has the opaque `ptr` type (llvmlite types it)."""
    al = b.alloca(ty)
    al.type = PTR
    return al
