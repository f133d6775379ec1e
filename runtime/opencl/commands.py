"""The commands of an OpenCL host schedule, what the backend instantiates per set
of dim values: device buffers (Root, and BufRef = a root plus an element
offset), kernel launches (Launch: a generated kernel; GemmLaunch and CopyLaunch:
library kernels), host loops and host checks.

Imports this package's hostvals and kernels.
"""

from __future__ import annotations

from irc.ir.core import Value

from .hostvals import HostVal
from .kernels import FLAG_CHECK, FLAG_SCALE, FLAG_TA, FLAG_TB, copy_name, gemm_name

# -- buffers -------------------------------------------------------------------------------------


class Root:
    """A device buffer of a function: an input or output argument, a shared
    variable, a temporary (mem.alloc), a constant, the scratch slots or the
    status word."""

    __slots__ = ("cname", "dtype", "id", "index", "kind", "sym", "type", "value")

    def __init__(self, id, kind, cname, dtype, type=None, index=None, sym=None, value=None):
        self.id = id
        self.kind = kind
        self.cname = cname
        self.dtype = dtype
        self.type = type
        self.index = index
        self.sym = sym
        self.value = value

    def __repr__(self):
        return f"Root({self.kind} {self.cname})"


class BufRef:
    __slots__ = ("off", "root")

    def __init__(self, root: Root, off: HostVal):
        self.root = root
        self.off = off


# -- commands ----------------------------------------------------------------------------------------


class Launch:
    """A generated kernel: its params and its grid. grid: list of extents
    (HostVal) of NDRange dims 0.. (dim 0 innermost), or None for one
    work-item; local: a fixed local size (reduce kernels) or None (chosen per
    plan from the extents)."""

    def __init__(self, name: str, kind: str, comment: str = ""):
        self.name = name
        self.kind = kind
        self.comment = comment
        self.params: list = []
        self.grid = None
        self.local = None
        self.chunked = False  # NDRange dim 0 counts chunks of the innermost loop (CPU devices)
        self.total = None  # reduce: the iteration count (HostVal)
        self.final = None  # reduce: the Launch that combines its partials
        self.source = ""

    def describe(self) -> str:
        if self.kind == "reduce":
            per = f"work-groups of {self.local[0]}" if self.local[0] > 1 else "work-items"
            return f"{self.name}  (chunks of [{self.total.text}] on {per})"
        if self.kind == "final":
            return f"{self.name}  (one work-item)"
        if not self.grid:
            return f"{self.name}  (one work-item)"
        return f"{self.name}  grid [{', '.join(g.text for g in reversed(self.grid))}]"


class GemmLaunch:
    """mem.gemm through the tiled library kernel; batch: (count, strides of
    A, B, C per batch element, reduce) or None."""

    def __init__(self, dtype, ta, tb, A, B, C, sizes, alpha, beta, scale, batch, check):
        self.dtype = dtype
        self.ta, self.tb = ta, tb
        self.A, self.B, self.C = A, B, C  # BufRef
        self.sizes = sizes  # M, N, K, lda, ldb, ldc, offA, offB, offC as HostVals
        self.alpha = alpha  # HostVal (alpha attr times a host scale)
        self.beta = beta  # float
        self.scale = scale  # BufRef + HostVal element offset of a device scale, or None
        self.batch = batch
        self.check = check

    def kernel(self, tile) -> str:
        return gemm_name(self.dtype, tile)

    @property
    def flags(self) -> int:
        return (
            (FLAG_TA * self.ta)
            | (FLAG_TB * self.tb)
            | (FLAG_SCALE * (self.scale is not None))
            | (FLAG_CHECK * self.check)
        )

    def describe(self) -> str:
        M, N, K = (s.text for s in self.sizes[:3])
        b = ""
        if self.batch:
            b = f", {'summed' if self.batch[4] else 'batch'} of {self.batch[0].text}"
        return (
            f"gemm {self.C.root.cname} = {self.A.root.cname}{'^T' if self.ta else ''} @ "
            f"{self.B.root.cname}{'^T' if self.tb else ''}  [{M} x {N} x {K}{b}]"
        )


class CopyLaunch:
    def __init__(self, src: BufRef, dst: BufRef, n: HostVal, size: int, check: bool):
        self.src, self.dst, self.n, self.size, self.check = src, dst, n, size, check
        self.same = src.root is dst.root

    @property
    def kernel(self) -> str:
        return copy_name(self.size, self.same)

    def describe(self) -> str:
        return f"copy {self.src.root.cname} -> {self.dst.root.cname}  [{self.n.text} elements]"


class HostCheck:
    """loop.assert of a host value: checked by the host before later launches."""

    def __init__(self, cond: HostVal, message: str):
        self.cond, self.message = cond, message

    def describe(self) -> str:
        return f"host check: {self.message}"


class HostLoop:
    def __init__(self, var: Value, lo: HostVal, hi: HostVal, body: list, text: str):
        self.var, self.lo, self.hi, self.body, self.text = var, lo, hi, body, text

    def describe(self) -> str:
        return f"host loop {self.text} in [{self.lo.text}, {self.hi.text})"
