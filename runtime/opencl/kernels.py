"""Library kernels of the OpenCL backend, rendered from templates per variant:

  irc_gemm_<dtype>_<tile>
      the tiled matrix product behind mem.gemm: row-major
      C = alpha * [scale] * op(A) @ op(B) + beta * C, with BLAS offsets and
      leading dimensions. A work-group computes a TM x TN tile of C; the
      operands pass through local memory TK deep; each work-item accumulates a
      WM x WN block in registers (strided, so neighbouring work-items touch
      neighbouring columns). NDRange dim 2 is a batch of independent products
      (offsets + b * stride, e.g. one per image of a convolution); `nkb`
      products can also be summed into the same C (the filter gradient).
  irc_gemm_<dtype>_cpu
      the same product for CPU devices: no local memory (the caches do that)
      and no reliance on vectorising across work-items; each work-item keeps
      a 4 x 16 block of C in float8 registers (or 4 x 4 dot products over k,
      8 wide, when B is transposed). About OpenBLAS's speed on PoCL for the
      MLP's products.
  irc_copy_u<bits> / irc_move_u<bits>
      mem.copy between different buffers (parallel), or within one buffer
      (one work-item, forward or backward as memmove).

Transposes, the scale and the status check are run-time flags, so a device
compiles one gemm kernel per dtype and tile for every model (the library is a
program of its own, shared by all modules on a device and cached by PoCL).
With the check flag a kernel returns at once when an earlier check of the
call failed (loop.assert set the status word), so a failed call changes
nothing more.

Imports nothing of the project beyond this package's codegen tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codegen import CTYPE


@dataclass(frozen=True)
class GemmTile:
    """A tile configuration: TM x TN of C per work-group, TK deep, WM x WN per work-item."""

    name: str
    tm: int
    tn: int
    tk: int
    wm: int
    wn: int

    @property
    def local(self) -> tuple:
        return (self.tn // self.wn, self.tm // self.wm)


TILES = {
    "t64": GemmTile("t64", 64, 64, 16, 4, 4),
    "t32": GemmTile("t32", 32, 32, 16, 2, 2),
    "t16": GemmTile("t16", 16, 16, 16, 1, 1),
}


FLAG_TA, FLAG_TB, FLAG_SCALE, FLAG_CHECK = 1, 2, 4, 8


def gemm_name(dtype: str, tile: str) -> str:
    return f"irc_gemm_{dtype}_{tile}"


def gemm_source(dtype: str, tile: str) -> str:
    t = TILES[tile]
    T = CTYPE[dtype]
    name = gemm_name(dtype, tile)
    lx, ly = t.local
    nt = lx * ly
    return f"""\
// C = alpha [* sp[soff]] * op(A) @ op(B) + beta * C ({T}, row-major), op(X) = X or X^T by
// flags (1: A^T, 2: B^T, 4: scale by sp[soff], 8: return at once if the call's status is set):
// {t.tm}x{t.tn} tiles of C per work-group, {t.tk}-deep local-memory tiles of A and B,
// {t.wm}x{t.wn} results per work-item in registers.
__kernel __attribute__((reqd_work_group_size({lx}, {ly}, 1)))
void {name}(
    __global const {T}* restrict A, const long offA, const long lda,
    __global const {T}* restrict B, const long offB, const long ldb,
    __global {T}* restrict C, const long offC, const long ldc,
    const long M, const long N, const long K, const {T} alpha, const {T} beta,
    const long sap, const long sbp, const long scp,
    const long nkb, const long ska, const long skb,
    __global const {T}* restrict sp, const long soff,
    __global const int* restrict irc_status, const int flags) {{
#pragma OPENCL FP_CONTRACT ON
    if ((flags & 8) && irc_status[0] != 0) return;  // an earlier check of this call failed
    __local {T} As[{t.tk}][{t.tm}];
    __local {T} Bs[{t.tk}][{t.tn}];
    const int ta = flags & 1, tb = flags & 2;
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int tid = ty * {lx} + tx;
    const long n0 = (long)get_group_id(0) * {t.tn}, m0 = (long)get_group_id(1) * {t.tm};
    const long bz = get_global_id(2);
    A += offA + bz * sap;
    B += offB + bz * sbp;
    C += offC + bz * scp;
    {T} acc[{t.wm}][{t.wn}];
    for (int wm = 0; wm < {t.wm}; ++wm)
        for (int wn = 0; wn < {t.wn}; ++wn) acc[wm][wn] = 0;
    for (long kb = 0; kb < nkb; ++kb) {{
        __global const {T}* Ab = A + kb * ska;
        __global const {T}* Bb = B + kb * skb;
        for (long k0 = 0; k0 < K; k0 += {t.tk}) {{
            // consecutive work-items load consecutive addresses of A and B
            for (int l = tid; l < {t.tm * t.tk}; l += {nt}) {{
                const int mm = ta ? l % {t.tm} : l / {t.tk}, kk = ta ? l / {t.tm} : l % {t.tk};
                const long m = m0 + mm, k = k0 + kk;
                As[kk][mm] = (m < M && k < K) ? Ab[ta ? k * lda + m : m * lda + k] : 0;
            }}
            for (int l = tid; l < {t.tk * t.tn}; l += {nt}) {{
                const int nn = tb ? l / {t.tk} : l % {t.tn}, kk = tb ? l % {t.tk} : l / {t.tn};
                const long n = n0 + nn, k = k0 + kk;
                Bs[kk][nn] = (n < N && k < K) ? Bb[tb ? n * ldb + k : k * ldb + n] : 0;
            }}
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int kk = 0; kk < {t.tk}; ++kk) {{
                {T} a[{t.wm}], b[{t.wn}];
                for (int wm = 0; wm < {t.wm}; ++wm) a[wm] = As[kk][ty + wm * {ly}];
                for (int wn = 0; wn < {t.wn}; ++wn) b[wn] = Bs[kk][tx + wn * {lx}];
                for (int wm = 0; wm < {t.wm}; ++wm)
                    for (int wn = 0; wn < {t.wn}; ++wn) acc[wm][wn] += a[wm] * b[wn];
            }}
            barrier(CLK_LOCAL_MEM_FENCE);
        }}
    }}
    const {T} al = (flags & 4) ? alpha * sp[soff] : alpha;
    for (int wm = 0; wm < {t.wm}; ++wm) {{
        const long m = m0 + ty + wm * {ly};
        if (m >= M) break;
        for (int wn = 0; wn < {t.wn}; ++wn) {{
            const long n = n0 + tx + wn * {lx};
            if (n < N) C[m * ldc + n] = beta == 0 ? al * acc[wm][wn] : al * acc[wm][wn] + beta * C[m * ldc + n];
        }}
    }}
}}"""


# The CPU variant: no local memory (a CPU's caches do that job) and explicit
# vector types (a CPU OpenCL vectorises work-items poorly around barriers).
CPU_RM = 4  # rows of C per work-item
CPU_VEC = {"f32": 8, "f64": 4}  # vector width; a work-item covers two vectors of columns


def gemm_cpu_name(dtype: str) -> str:
    return f"irc_gemm_{dtype}_cpu"


def gemm_cpu_source(dtype: str) -> str:
    T = CTYPE[dtype]
    W = CPU_VEC[dtype]
    V = f"{T}{W}"
    name = gemm_cpu_name(dtype)
    rows = range(CPU_RM)

    def each(fmt):
        return "\n".join(fmt.format(r=r) for r in rows)

    def ld(ptr, off=0):
        """a vector from consecutive scalars (the compiler merges them into one load;
        vloadn is an out-of-line call on some CPU devices)"""
        return f"({V})(" + ", ".join(f"{ptr}[{off + j}]" for j in range(W)) + ")"

    return f"""\
// C = alpha [* sp[soff]] * op(A) @ op(B) + beta * C ({T}, row-major) for CPU devices; flags as
// irc_gemm_{dtype}_t64. Without B^T, a work-item computes a {CPU_RM} x {2 * W} block of C as {2 * CPU_RM}
// {V} registers (rows of op(B) are contiguous); with B^T, a {CPU_RM} x {CPU_RM} block of dot
// products over k, {W} wide (rows of B are contiguous in k). Edge blocks load with bounds checks.
__kernel void {name}(
    __global const {T}* restrict A, const long offA, const long lda,
    __global const {T}* restrict B, const long offB, const long ldb,
    __global {T}* restrict C, const long offC, const long ldc,
    const long M, const long N, const long K, const {T} alpha, const {T} beta,
    const long sap, const long sbp, const long scp,
    const long nkb, const long ska, const long skb,
    __global const {T}* restrict sp, const long soff,
    __global const int* restrict irc_status, const int flags) {{
#pragma OPENCL FP_CONTRACT ON
    if ((flags & 8) && irc_status[0] != 0) return;
    const int ta = flags & 1, tb = flags & 2;
    const long bz = get_global_id(2);
    A += offA + bz * sap;
    B += offB + bz * sbp;
    C += offC + bz * scp;
    const long sam = ta ? 1 : lda, sak = ta ? lda : 1;
    const {T} al = (flags & 4) ? alpha * sp[soff] : alpha;
    const long m0 = get_global_id(1) * {CPU_RM};
    if (m0 >= M) return;
    // rows past M repeat the last row (their results are not stored)
{each("    const long mr{r} = m0 + {r} < M ? m0 + {r} : M - 1;")}
    if (!tb) {{
        const long n0 = get_global_id(0) * {2 * W};
        if (n0 >= N) return;
        const int full = n0 + {2 * W} <= N;
{each("        " + V + " c{r}0 = 0, c{r}1 = 0;")}
        for (long kb = 0; kb < nkb; ++kb) {{
{each("            __global const " + T + "* a{r} = A + kb * ska + mr{r} * sam;")}
            __global const {T}* b = B + kb * skb + n0;
            for (long k = 0; k < K; ++k, b += ldb) {{
                {V} b0, b1;
                if (full) {{
                    b0 = {ld("b")};
                    b1 = {ld("b", W)};
                }} else {{
                    {T} t[{2 * W}];
                    for (int j = 0; j < {2 * W}; ++j) t[j] = n0 + j < N ? b[j] : 0;
                    b0 = {ld("t")};
                    b1 = {ld("t", W)};
                }}
                const long ka = k * sak;
{each("                const " + T + " a{r}k = a{r}[ka];" + chr(10) + "                c{r}0 = a{r}k * b0 + c{r}0;" + chr(10) + "                c{r}1 = a{r}k * b1 + c{r}1;")}
            }}
        }}
{each("        if (m0 + {r} < M) irc_gemm_store_" + dtype + "(C + (m0 + {r}) * ldc + n0, c{r}0, c{r}1, al, beta, full ? " + str(2 * W) + " : N - n0);")}
        return;
    }}
    const long n0 = get_global_id(0) * {CPU_RM};
    if (n0 >= N) return;
{each("    const long nr{r} = n0 + {r} < N ? n0 + {r} : N - 1;")}
{chr(10).join("    " + V + f" d{r}{q} = 0;" for r in rows for q in rows)}
    {T} s[{CPU_RM}][{CPU_RM}];
    for (int r = 0; r < {CPU_RM}; ++r)
        for (int q = 0; q < {CPU_RM}; ++q) s[r][q] = 0;
    for (long kb = 0; kb < nkb; ++kb) {{
{each("        __global const " + T + "* a{r} = A + kb * ska + mr{r} * sam;")}
{each("        __global const " + T + "* b{r} = B + kb * skb + nr{r} * ldb;")}
        long k = 0;
        if (!ta) {{
            for (; k + {W} <= K; k += {W}) {{
{each("                const " + V + " av{r} = " + ld("(a{r} + k)") + ", bv{r} = " + ld("(b{r} + k)") + ";")}
{chr(10).join(f"                d{r}{q} = av{r} * bv{q} + d{r}{q};" for r in rows for q in rows)}
            }}
        }}
        for (; k < K; ++k) {{
            const long ka = k * sak;
{chr(10).join(f"            s[{r}][{q}] = a{r}[ka] * b{q}[k] + s[{r}][{q}];" for r in rows for q in rows)}
        }}
    }}
{chr(10).join(f"    s[{r}][{q}] += irc_hsum_{dtype}(d{r}{q});" for r in rows for q in rows)}
    for (int r = 0; r < {CPU_RM}; ++r) {{
        if (m0 + r >= M) break;
        for (int q = 0; q < {CPU_RM}; ++q) {{
            if (n0 + q >= N) break;
            __global {T}* c = C + (m0 + r) * ldc + n0 + q;
            *c = beta == 0 ? al * s[r][q] : al * s[r][q] + beta * *c;
        }}
    }}
}}"""


def gemm_cpu_helpers(dtype: str) -> str:
    T = CTYPE[dtype]
    W = CPU_VEC[dtype]
    V = f"{T}{W}"
    half = {8: "lo", 4: "lo"}[W]
    hsum = (
        "v.s0 + v.s1 + v.s2 + v.s3 + v.s4 + v.s5 + v.s6 + v.s7"
        if W == 8
        else "v.s0 + v.s1 + v.s2 + v.s3"
    )
    del half
    return f"""\
inline {T} irc_hsum_{dtype}({V} v) {{ return {hsum}; }}
inline void irc_gemm_store_{dtype}(__global {T}* c, {V} c0, {V} c1, {T} al, {T} beta, long n) {{
    // one row of a CPU gemm block: n ({2 * W} when full) columns of al * acc + beta * c
    {T} t[{2 * W}];
{chr(10).join(f"    t[{j}] = c0.s{j:x};" for j in range(W))}
{chr(10).join(f"    t[{W + j}] = c1.s{j:x};" for j in range(W))}
    if (beta == 0) {{
        for (long j = 0; j < n; ++j) c[j] = al * t[j];
    }} else {{
        for (long j = 0; j < n; ++j) c[j] = al * t[j] + beta * c[j];
    }}
}}"""


COPY_TYPES = {1: "uchar", 2: "ushort", 4: "uint", 8: "ulong"}


def copy_name(size: int, same: bool) -> str:
    return f"irc_{'move' if same else 'copy'}_u{size * 8}"


def copy_source(size: int, same: bool) -> str:
    T = COPY_TYPES[size]
    name = copy_name(size, same)
    if not same:
        return f"""\
// dst[doff + e] = src[soff + e] for e < n (mem.copy between two buffers)
__kernel void {name}(
    __global {T}* restrict dst, const long doff, __global const {T}* restrict src, const long soff,
    const long n, __global const int* restrict irc_status, const int check) {{
    if (check && irc_status[0] != 0) return;
    const long e = get_global_id(0);
    if (e >= n) return;
    dst[doff + e] = src[soff + e];
}}"""
    return f"""\
// mem.copy within one buffer, as memmove (one work-item)
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void {name}(__global {T}* buf, const long doff, const long soff, const long n,
            __global const int* restrict irc_status, const int check) {{
    if (check && irc_status[0] != 0) return;
    if (doff > soff) {{ for (long e = n - 1; e >= 0; --e) buf[doff + e] = buf[soff + e]; }}
    else {{ for (long e = 0; e < n; ++e) buf[doff + e] = buf[soff + e]; }}
}}"""


def library_source(dtype: str) -> str:
    """The library program for one float dtype: every gemm tile, and (with f32) the copies."""
    parts = [f"// irc library kernels ({dtype})"]
    if dtype == "f64":
        parts.append("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
    parts += [gemm_source(dtype, t) for t in TILES]
    parts += [gemm_cpu_helpers(dtype), gemm_cpu_source(dtype)]
    if dtype == "f32":
        parts += [copy_source(size, same) for size in COPY_TYPES for same in (False, True)]
    return "\n\n".join(parts) + "\n"
