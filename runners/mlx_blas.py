"""Which BLAS MLX's Linux CPU backend uses, and switching it to OpenBLAS.

The mlx[cpu] wheel links a bundled reference BLAS that makes fp32 prefill about 20x slower
than OpenBLAS. libmlx leaves `cblas_sgemm` undefined and the dynamic linker looks in the
global scope first, so an OpenBLAS (PyPI: cmeel-openblas) loaded with RTLD_GLOBAL before
mlx is imported serves every fp32 matrix product. Call `use_openblas` in the process that
will run MLX, before it imports mlx; `EDGEBENCH_MLX_BLAS=bundled` keeps the bundled one
(to measure the difference). Elsewhere (macOS: Accelerate) nothing changes.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import signal
import subprocess
import sys
from pathlib import Path

OPENBLAS_DISTRIBUTION = "cmeel-openblas"
SWITCH = "EDGEBENCH_MLX_BLAS"
BUNDLED = "reference BLAS bundled with mlx[cpu]"


def use_openblas(threads: int) -> dict:
    """Preload OpenBLAS with `threads` threads when it is installed; say what was done."""
    if sys.platform != "linux":
        return {"blas": "Accelerate" if sys.platform == "darwin" else "platform default"}
    if os.environ.get(SWITCH) == "bundled":
        return {"blas": BUNDLED, "blas_reason": f"{SWITCH}=bundled"}
    path = openblas_path()
    if path is None:
        return {"blas": BUNDLED, "blas_reason": f"{OPENBLAS_DISTRIBUTION} is not installed"}
    if "mlx.core" in sys.modules:  # its BLAS may already be bound: claim nothing
        return {"blas": "unknown", "blas_reason": "mlx was imported before OpenBLAS could be preloaded"}
    problem = probe_problem(path, threads)
    if problem:
        return {"blas": BUNDLED, "blas_reason": f"OpenBLAS {problem}"}
    try:
        lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:  # the probe loaded it: only a change between the two gets here
        return {"blas": BUNDLED, "blas_reason": f"OpenBLAS would not load: {exc}"}
    lib.openblas_set_num_threads(threads)
    lib.openblas_get_config.restype = ctypes.c_char_p
    return {
        "blas": "OpenBLAS",
        "blas_config": lib.openblas_get_config().decode(),
        "blas_threads": lib.openblas_get_num_threads(),
    }


# One small sgemm in a child process: the library may not load (a missing dependency such
# as libgfortran.so.5), and some OpenBLAS builds die with SIGILL on some CPUs; a worker that
# preloaded one would die on its first fp32 product. The child says which, in its own words.
_PROBE = """
import ctypes, sys
try:
    lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
except OSError as exc:
    sys.exit(f"would not load: {exc}")
lib.openblas_set_num_threads(int(sys.argv[2]))
n = 64
a = (ctypes.c_float * (n * n))(*([1.0] * (n * n)))
c = (ctypes.c_float * (n * n))()
lib.cblas_sgemm(101, 111, 111, n, n, n, ctypes.c_float(1.0), a, n, a, n, ctypes.c_float(0.0), c, n)
sys.exit(None if c[0] == n else f"multiplied wrongly in a probe on this CPU ({c[0]} for {n})")
"""


def probe_problem(path: Path, threads: int) -> str | None:
    """None when OpenBLAS loads and multiplies correctly in a child process; else what went
    wrong, in the child's own words (its last line of stderr) where it printed any."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path), str(threads)], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return "hung in a probe on this CPU"
    if done.returncode < 0:
        return f"died with {signal.Signals(-done.returncode).name} in a probe on this CPU"
    if done.returncode == 0:
        return None
    said = [line for line in done.stderr.splitlines() if line.strip()]
    return said[-1] if said else f"failed in a probe on this CPU (exit {done.returncode}, nothing on stderr)"


def openblas_path() -> Path | None:
    try:
        dist = importlib.metadata.distribution(OPENBLAS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f for f in dist.files or [] if f.name == "libopenblas.so.0"]
    return Path(dist.locate_file(found[0])) if found else None


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def global_sgemm_library() -> str | None:
    """The file that serves `cblas_sgemm` from the global scope, where libmlx looks first;
    None when nothing there does (libmlx then uses its bundled BLAS)."""
    process = ctypes.CDLL(None)
    try:
        address = ctypes.cast(process.cblas_sgemm, ctypes.c_void_p)
    except AttributeError:
        return None
    info = _DlInfo()
    if not process.dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        return None
    return info.dli_fname.decode()
