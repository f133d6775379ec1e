"""A persistent thread pool for generated code, written in LLVM IR and compiled
once per process:

    void irc_pool_run(ptr fn, ptr args, i64 stride, i64 n)

runs fn(args + k * stride) for k in [0, n): task 0 on the calling thread, task
k > 0 on worker k - 1 (n <= MAX_TASKS; workers are started on first use). Each
worker has its own mailbox {epoch, fn, arg, done, claim, sleeping} and its own
pthread mutex and condition variable: the caller fills the mailbox of an idle
worker and bumps its epoch; the worker runs the task and publishes done = epoch.
There is no shared work queue, so no ticket races.

An idle worker spins (with `pause`) for tens of microseconds (SPIN_CYCLES), so that the
next call of a loop (the RNN step's 32x128x128 products, a training loop) hands
it a task in about a microsecond instead of the ~30 us of pthread_create + join
or a wake-up. Then it blocks on its condition variable: an idle irc uses no CPU
at all, and does not take cores from the rest of the process (NumPy's OpenBLAS,
PyTorch). Going to sleep and waking follow the classic Dekker pattern with
seq_cst accesses: the worker sets `sleeping` (under its mutex) and then re-reads
the epoch; the caller bumps the epoch and then reads `sleeping`, and signals
under the mutex when it is set. One of the two always sees the other's write,
so no wake-up is lost.

One caller at a time: a second thread calling while the pool is busy runs its
tasks itself (a try-lock), so concurrent calls never wait on each other. The
caller runs a task whose worker has not claimed it yet. When the caller still
had to wait for a worker, after finishing its own share, more than 4x as long as
that share took and more than ~2 ms (another process holds the worker's core
for whole time slices), the pool runs everything on the calling thread for the
next ~8 ms. After fork() the child starts a new pool (the pid is checked).

The thread count is not the pool's business: generated code splits work into
ctx.nthreads tasks (codegen.py), and the backend sets ctx.nthreads from the
process-wide setting kept here (num_threads / set_num_threads: irc.load(...,
threads=N), irc.set_num_threads(N), IRC_NUM_THREADS, else the usable cores).

build_module(triple) is also what `irc build` links into a library (aot.py):
it needs only pthreads and libc.

Imports llvmlite only (and jit for compiling).
"""

from __future__ import annotations

import os
import threading
import weakref

import llvmlite.binding as llvm
from llvmlite import ir

MAX_TASKS = 16
# How long an idle worker spins before it blocks: SPIN_CYCLES time-stamp-counter
# cycles on x86 (~40 us at 3 GHz), SPIN_ITERS polls elsewhere (no portable
# user-mode cycle counter; a poll is a few ns).
SPIN_CYCLES = 1 << 17
SPIN_ITERS = 1 << 13
PTHREAD_BYTES = 128  # room for a pthread_mutex_t / pthread_cond_t on any libc we target
WAIT_LIMIT = 1 << 22  # cycles (~2 ms, or 4x its own share's time if longer) the caller may wait...
BACKOFF = 1 << 24  # ...before running alone for this many cycles (~8 ms)

I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()
TASK_FN = ir.FunctionType(PTR, [PTR])

_lock = threading.Lock()
_ENGINE = None
ADDRESS = None


def _atomic_load(b, p, ty=I64):
    return b.load_atomic(p, "seq_cst", 8, typ=ty)


def _atomic_store(b, v, p):
    # IRBuilder.store_atomic insists on a typed pointer; build the instruction directly
    from llvmlite.ir import instructions

    st = instructions.StoreAtomicInstr(b.block, v, p, "seq_cst", 8)
    b._insert(st)
    return st


def _pause(b, x86):
    if x86:
        fn = b.module.globals.get("llvm.x86.sse2.pause")
        if fn is None:
            fn = ir.Function(b.module, ir.FunctionType(VOID, []), "llvm.x86.sse2.pause")
        b.call(fn, [])


def _clock(m, triple: str):
    """A function i64 () -> now: the time-stamp counter on x86, else CLOCK_MONOTONIC in
    ns (llvm.readcyclecounter reads PMCCNTR_EL0 on AArch64, which traps in user mode)."""
    if triple.startswith(("x86_64", "i686", "i386")):
        return ir.Function(m, ir.FunctionType(I64, []), "llvm.readcyclecounter")
    f = ir.Function(m, ir.FunctionType(I64, []), "irc_pool_now")
    f.linkage = "internal"
    b = ir.IRBuilder(f.append_basic_block("e"))
    ts_t = ir.LiteralStructType([I64, I64])
    ts = b.alloca(ts_t)
    ts.type = PTR
    cg = ir.Function(m, ir.FunctionType(I32, [I32, PTR]), "clock_gettime")
    monotonic = 6 if ("apple" in triple or "darwin" in triple) else 1
    b.call(cg, [ir.Constant(I32, monotonic), ts])
    z = ir.Constant(I32, 0)
    sec = b.load(b.gep(ts, [z, z], source_etype=ts_t), typ=I64)
    nsec = b.load(b.gep(ts, [z, ir.Constant(I32, 1)], source_etype=ts_t), typ=I64)
    b.ret(b.add(b.mul(sec, ir.Constant(I64, 1_000_000_000)), nsec))
    return f


def build_module(triple: str) -> ir.Module:
    x86 = triple.startswith(("x86_64", "i686", "i386"))
    m = ir.Module("irc_threads")
    m.triple = triple
    # epoch, fn, arg, done, claim (0 posted, 1 taken by the worker, 2 by the caller),
    # sleeping (1 while the worker blocks or is about to), pad to a cache line
    mbox_t = ir.LiteralStructType([I64, PTR, PTR, I64, I64, I64, ir.ArrayType(I8, 16)])
    mboxes_t = ir.ArrayType(mbox_t, MAX_TASKS)

    def gvar(name, ty, init):
        g = ir.GlobalVariable(m, ty, name)
        g.linkage = "internal"
        g.initializer = ir.Constant(ty, init)
        g.align = 64
        g.type = PTR  # opaque, so GEPs into it give plain `ptr`s
        return g

    mboxes = gvar("irc_pool_mbox", mboxes_t, None)
    mboxes.initializer = ir.Constant(mboxes_t, None)
    nworkers = gvar("irc_pool_nworkers", I64, 0)
    busy = gvar("irc_pool_busy", I64, 0)
    backoff = gvar("irc_pool_backoff_until", I64, 0)
    owner = gvar("irc_pool_pid", I64, 0)
    sync_t = ir.ArrayType(ir.ArrayType(I8, PTHREAD_BYTES), MAX_TASKS)
    mutexes = gvar("irc_pool_mutex", sync_t, None)
    conds = gvar("irc_pool_cond", sync_t, None)
    z = ir.Constant(I32, 0)

    def sync(b, arr, w):
        return b.gep(arr, [ir.Constant(I64, 0), w, ir.Constant(I64, 0)], source_etype=sync_t)

    def field(b, w, k):
        return b.gep(mboxes, [ir.Constant(I64, 0), w, ir.Constant(I32, k)], source_etype=mboxes_t)

    pthread_create = ir.Function(m, ir.FunctionType(I32, [PTR, PTR, PTR, PTR]), "pthread_create")
    pthread_detach = ir.Function(m, ir.FunctionType(I32, [I64]), "pthread_detach")
    mutex_init = ir.Function(m, ir.FunctionType(I32, [PTR, PTR]), "pthread_mutex_init")
    mutex_lock = ir.Function(m, ir.FunctionType(I32, [PTR]), "pthread_mutex_lock")
    mutex_unlock = ir.Function(m, ir.FunctionType(I32, [PTR]), "pthread_mutex_unlock")
    cond_init = ir.Function(m, ir.FunctionType(I32, [PTR, PTR]), "pthread_cond_init")
    cond_wait = ir.Function(m, ir.FunctionType(I32, [PTR, PTR]), "pthread_cond_wait")
    cond_signal = ir.Function(m, ir.FunctionType(I32, [PTR]), "pthread_cond_signal")
    clock = _clock(m, triple)
    getpid = ir.Function(m, ir.FunctionType(I32, []), "getpid")
    sched_yield = ir.Function(m, ir.FunctionType(I32, []), "sched_yield")

    # -- worker ------------------------------------------------------------------------------
    worker = ir.Function(m, ir.FunctionType(PTR, [PTR]), "irc_pool_worker")
    worker.linkage = "internal"
    e = worker.append_basic_block("e")
    wait = worker.append_basic_block("wait")
    spin_bb = worker.append_basic_block("spin")
    sleep = worker.append_basic_block("sleep")
    recheck = worker.append_basic_block("recheck")
    block = worker.append_basic_block("block")
    woke = worker.append_basic_block("woke")
    run = worker.append_basic_block("run")
    b = ir.IRBuilder(e)
    w = b.ptrtoint(worker.args[0], I64)  # the worker's index

    def idle_mark(b):
        # the start of an idle spell: a clock reading on x86, a poll count elsewhere
        return b.call(clock, []) if x86 else ir.Constant(I64, 0)

    # the last epoch this mailbox completed (not the current epoch: the first
    # task may have been posted before this thread got to run)
    seen0 = _atomic_load(b, field(b, w, 3))
    mark0 = idle_mark(b)
    b.branch(wait)
    b.position_at_end(wait)
    seen = b.phi(I64)
    mark = b.phi(I64)
    seen.add_incoming(seen0, e)
    mark.add_incoming(mark0, e)
    cur = _atomic_load(b, field(b, w, 0))
    b.cbranch(b.icmp_unsigned("!=", cur, seen), run, spin_bb)
    # spin for a bounded time...
    b.position_at_end(spin_bb)
    _pause(b, x86)
    if x86:
        mark2 = mark
        tired = b.icmp_unsigned(">", b.sub(b.call(clock, []), mark), ir.Constant(I64, SPIN_CYCLES))
    else:
        mark2 = b.add(mark, ir.Constant(I64, 1))
        tired = b.icmp_unsigned(">", mark2, ir.Constant(I64, SPIN_ITERS))
    b.cbranch(tired, sleep, wait)
    seen.add_incoming(seen, spin_bb)
    mark.add_incoming(mark2, spin_bb)
    # ...then block on the condition variable until the epoch moves
    b.position_at_end(sleep)
    mu = sync(b, mutexes, w)
    cv = sync(b, conds, w)
    b.call(mutex_lock, [mu])
    _atomic_store(b, ir.Constant(I64, 1), field(b, w, 5))
    b.branch(recheck)
    b.position_at_end(recheck)
    cur2 = _atomic_load(b, field(b, w, 0))
    b.cbranch(b.icmp_unsigned("!=", cur2, seen), woke, block)
    b.position_at_end(block)
    b.call(cond_wait, [cv, mu])  # spurious wake-ups just re-check
    b.branch(recheck)
    b.position_at_end(woke)
    _atomic_store(b, ir.Constant(I64, 0), field(b, w, 5))
    b.call(mutex_unlock, [mu])
    b.branch(run)
    b.position_at_end(run)
    cur_r = b.phi(I64)
    cur_r.add_incoming(cur, wait)
    cur_r.add_incoming(cur2, woke)
    # claim the task; the caller may have taken it already (it runs tasks whose
    # worker is slow to wake, e.g. when another process has the core)
    got = b.cmpxchg(field(b, w, 4), ir.Constant(I64, 0), ir.Constant(I64, 1), "seq_cst", "seq_cst")
    work = worker.append_basic_block("work")
    back = worker.append_basic_block("back")
    b.cbranch(b.extract_value(got, 1), work, back)
    b.position_at_end(work)
    ep = _atomic_load(b, field(b, w, 0))  # the epoch of the task claimed (posted before its claim)
    fn = b.load(field(b, w, 1), typ=TASK_FN.as_pointer())  # typed, so llvmlite can call it
    arg = b.load(field(b, w, 2), typ=PTR)
    b.call(fn, [arg])
    _atomic_store(b, ep, field(b, w, 3))
    b.branch(back)
    b.position_at_end(back)
    last = b.phi(I64)
    last.add_incoming(cur_r, run)
    last.add_incoming(ep, work)
    seen.add_incoming(last, back)
    mark.add_incoming(idle_mark(b), back)
    b.branch(wait)

    # -- irc_pool_run ---------------------------------------------------------------------------
    fn_t = ir.FunctionType(VOID, [TASK_FN.as_pointer(), PTR, I64, I64])
    runf = ir.Function(m, fn_t, "irc_pool_run")
    task, args, stride, n = runf.args
    e = runf.append_basic_block("e")
    b = ir.IRBuilder(e)

    def at(k):
        return b.gep(args, [b.mul(k, stride)], source_etype=I8)

    seq = runf.append_basic_block("seq")
    par = runf.append_basic_block("par")
    done = runf.append_basic_block("done")
    # a try-lock: a concurrent caller runs its tasks itself
    rdtsc = clock
    t_start = b.call(rdtsc, [])
    # after a dispatch that waited long for a worker (another process has the
    # core), run on this thread alone for a while instead of waiting again
    calm = b.icmp_unsigned(">=", t_start, b.load(backoff, typ=I64))
    many = b.and_(b.icmp_signed(">", n, ir.Constant(I64, 1)), calm)
    got = b.cmpxchg(busy, ir.Constant(I64, 0), ir.Constant(I64, 1), "seq_cst", "seq_cst")
    ok = b.and_(many, b.extract_value(got, 1))
    # (a failed exchange left busy as it was; a successful one with n <= 1 is undone in seq)
    took = b.extract_value(got, 1)
    b.cbranch(ok, par, seq)

    b.position_at_end(seq)
    with b.if_then(took):
        _atomic_store(b, ir.Constant(I64, 0), busy)
    loop = runf.append_basic_block("seqloop")
    pre = b.block
    b.cbranch(b.icmp_signed(">", n, ir.Constant(I64, 0)), loop, done)
    b.position_at_end(loop)
    k = b.phi(I64)
    k.add_incoming(ir.Constant(I64, 0), pre)
    b.call(task, [at(k)])
    k2 = b.add(k, ir.Constant(I64, 1))
    k.add_incoming(k2, b.block)
    b.cbranch(b.icmp_signed("<", k2, n), loop, done)

    b.position_at_end(par)
    ntask = b.select(b.icmp_signed(">", n, ir.Constant(I64, MAX_TASKS)), ir.Constant(I64, MAX_TASKS), n)
    # after fork(), the child has no workers: start afresh
    pid = b.sext(b.call(getpid, []), I64)
    with b.if_then(b.icmp_signed("!=", pid, b.load(owner, typ=I64))):
        b.store(ir.Constant(I64, 0), nworkers)
        b.store(pid, owner)
        b.store(ir.Constant(mboxes_t, None), mboxes)
    # start workers up to ntask - 1
    have = b.load(nworkers, typ=I64)
    startl = runf.append_basic_block("start")
    started = runf.append_basic_block("started")
    pre = b.block
    need = b.sub(ntask, ir.Constant(I64, 1))
    b.cbranch(b.icmp_signed("<", have, need), startl, started)
    b.position_at_end(startl)
    wv = b.phi(I64)
    wv.add_incoming(have, pre)
    tid = b.alloca(I64)
    tid.type = PTR
    b.call(mutex_init, [sync(b, mutexes, wv), ir.Constant(PTR, None)])
    b.call(cond_init, [sync(b, conds, wv), ir.Constant(PTR, None)])
    b.call(pthread_create, [tid, ir.Constant(PTR, None), b.bitcast(worker, PTR), b.inttoptr(wv, PTR)])
    b.call(pthread_detach, [b.load(tid, typ=I64)])
    wv2 = b.add(wv, ir.Constant(I64, 1))
    wv.add_incoming(wv2, b.block)
    b.store(wv2, nworkers)
    b.cbranch(b.icmp_signed("<", wv2, need), startl, started)
    b.position_at_end(started)
    # post tasks 1..ntask-1
    post = runf.append_basic_block("post")
    posted = runf.append_basic_block("posted")
    pre = b.block
    b.branch(post)
    b.position_at_end(post)
    k = b.phi(I64)
    k.add_incoming(ir.Constant(I64, 1), pre)
    wk = b.sub(k, ir.Constant(I64, 1))
    b.store(b.bitcast(task, PTR), field(b, wk, 1))
    b.store(at(k), field(b, wk, 2))
    ep = _atomic_load(b, field(b, wk, 0))
    _atomic_store(b, b.add(ep, ir.Constant(I64, 1)), field(b, wk, 0))
    _atomic_store(b, ir.Constant(I64, 0), field(b, wk, 4))  # last: a claim sees the new epoch
    # wake the worker if it blocks (or is about to: it re-reads the epoch after
    # setting `sleeping`, and waits holding the mutex we take here)
    with b.if_then(b.icmp_unsigned("!=", _atomic_load(b, field(b, wk, 5)), ir.Constant(I64, 0))):
        mu = sync(b, mutexes, wk)
        b.call(mutex_lock, [mu])
        b.call(cond_signal, [sync(b, conds, wk)])
        b.call(mutex_unlock, [mu])
    k2 = b.add(k, ir.Constant(I64, 1))
    k.add_incoming(k2, b.block)
    b.cbranch(b.icmp_signed("<", k2, ntask), post, posted)
    b.position_at_end(posted)
    b.call(task, [at(ir.Constant(I64, 0))])
    t_wait = None  # set below, once the caller's own tasks are done
    # tasks beyond MAX_TASKS (never generated) would run here, in order
    extra = runf.append_basic_block("extra")
    waitl = runf.append_basic_block("waitall")
    pre = b.block
    b.cbranch(b.icmp_signed(">", n, ntask), extra, waitl)
    b.position_at_end(extra)
    k = b.phi(I64)
    k.add_incoming(ntask, pre)
    b.call(task, [at(k)])
    k2 = b.add(k, ir.Constant(I64, 1))
    k.add_incoming(k2, b.block)
    b.cbranch(b.icmp_signed("<", k2, n), extra, waitl)
    # wait for every worker's done == epoch
    b.position_at_end(waitl)
    t_wait = b.call(rdtsc, [])
    wl = runf.append_basic_block("waitone")
    spin = runf.append_basic_block("waitspin")
    nxt = runf.append_basic_block("waitnext")
    fin = runf.append_basic_block("fin")
    b.branch(wl)
    b.position_at_end(wl)
    k = b.phi(I64)
    waits = b.phi(I64)
    k.add_incoming(ir.Constant(I64, 1), waitl)
    waits.add_incoming(ir.Constant(I64, 0), waitl)
    wk = b.sub(k, ir.Constant(I64, 1))
    # a task its worker has not claimed yet is run here
    stole = b.extract_value(b.cmpxchg(field(b, wk, 4), ir.Constant(I64, 0), ir.Constant(I64, 2),
                                      "seq_cst", "seq_cst"), 1)
    with b.if_then(stole):
        b.call(task, [at(k)])
    fin_ok = b.or_(stole, b.icmp_unsigned("==", _atomic_load(b, field(b, wk, 3)),
                                          _atomic_load(b, field(b, wk, 0))))
    b.cbranch(fin_ok, nxt, spin)
    b.position_at_end(spin)
    _pause(b, x86)
    # a worker that lost its core (a busy machine): give ours away instead of spinning
    with b.if_then(b.icmp_unsigned(">", waits, ir.Constant(I64, 2000))):
        b.call(sched_yield, [])
    waits2 = b.add(waits, ir.Constant(I64, 1))
    b.branch(wl)
    k.add_incoming(k, b.block)
    waits.add_incoming(waits2, b.block)
    b.position_at_end(nxt)
    k2 = b.add(k, ir.Constant(I64, 1))
    k.add_incoming(k2, nxt)
    waits.add_incoming(waits, nxt)
    b.cbranch(b.icmp_signed("<", k2, ntask), wl, fin)
    b.position_at_end(fin)
    t_end = b.call(rdtsc, [])
    own = b.shl(b.sub(t_wait, t_start), ir.Constant(I64, 2))
    limit = b.select(b.icmp_unsigned(">", own, ir.Constant(I64, WAIT_LIMIT)), own, ir.Constant(I64, WAIT_LIMIT))
    with b.if_then(b.icmp_unsigned(">", b.sub(t_end, t_wait), limit)):
        b.store(b.add(t_end, ir.Constant(I64, BACKOFF)), backoff)
    _atomic_store(b, ir.Constant(I64, 0), busy)
    b.branch(done)

    b.position_at_end(done)
    b.ret_void()
    return m


# -- the thread-count setting ------------------------------------------------------------------
ENV_VAR = "IRC_NUM_THREADS"
_setting = None  # set_num_threads(n); None: IRC_NUM_THREADS, else the usable cores
_followers = weakref.WeakSet()  # backends loaded without threads=: they follow the setting


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def check_threads(n, what: str = "threads") -> int:
    """n as a thread count (a positive integer), or ValueError."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        if isinstance(n, str) and n.strip().isdigit() and int(n) >= 1:
            return int(n)
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    return n


def num_threads() -> int:
    """The process-wide thread count of irc's compiled code: set_num_threads(n) if
    called, else $IRC_NUM_THREADS, else the usable cores."""
    if _setting is not None:
        return _setting
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return check_threads(env.strip(), ENV_VAR)
    return usable_cores()


def set_num_threads(n: int) -> None:
    """Set the thread count of parallel loops and matrix products (BLAS calls are
    split over the same threads; OpenBLAS itself runs on one) for every module
    loaded without an explicit `threads=`, now and later. 1 switches threading off."""
    global _setting
    n = check_threads(n)
    _setting = n
    for backend in list(_followers):
        backend.set_threads(n)


def get_num_threads() -> int:
    """The current process-wide setting (see num_threads)."""
    return num_threads()


def follow(backend) -> None:
    """Register a backend (an object with set_threads(n)) to follow set_num_threads."""
    _followers.add(backend)


def pin(backend, n: int) -> None:
    """Give a backend its own thread count (irc.load(..., threads=n)): it stops
    following set_num_threads."""
    _followers.discard(backend)
    backend.set_threads(check_threads(n))


def pool_address() -> int:
    """Compile the pool (once per process), bind `irc_pool_run` for generated code."""
    global _ENGINE, ADDRESS
    with _lock:
        if ADDRESS is None:
            from . import jit

            jit.init()
            triple = llvm.get_process_triple()
            mod = jit.optimize(str(build_module(triple)))
            tm = jit._new_target_machine()
            eng = llvm.create_mcjit_compiler(mod, tm)
            eng.finalize_object()
            ADDRESS = eng.get_function_address("irc_pool_run")
            _ENGINE = eng
            llvm.add_symbol("irc_pool_run", ADDRESS)
        return ADDRESS
