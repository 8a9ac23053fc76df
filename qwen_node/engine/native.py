"""Small C kernels (kernels/*.c) beside their PyTorch references, built on first use with the system C compiler.

Build: gcc -O3 -march=native -ffast-math -fopenmp into $QWEN_STACK_KERNEL_CACHE (default
~/.cache/qwen_stack/kernels), keyed by source, flags, compiler and CPU, so a shared home folder never serves
code built for another CPU; loaded with ctypes. OpenMP: the library's libgomp soname matches the one PyTorch has
loaded, so the kernels share torch's thread pool and thread count.
Without a compiler, after a failed build, with QWEN_STACK_NATIVE=0 or for inputs a kernel does not cover, callers
get None and use the PyTorch reference (a failed build is logged once).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

LOG = logging.getLogger(__name__)
KERNELS = Path(__file__).parent / "kernels"
# Compile with all of -ffast-math (glibc declares its vector expf only under __FAST_MATH__: 3x faster softmax)
# but link without it: given -ffast-math, gcc < 13 links crtfastmath.o into the library, whose constructor
# switches the whole process to flush-to-zero / denormals-are-zero when it is loaded.
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC"]
LINK_FLAGS = ["-shared", "-fopenmp"]


def _cpu_id() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    return "\n".join(next((ln for ln in lines if ln.startswith(key)), "") for key in ("model name", "flags"))


@lru_cache(maxsize=None)
def load(name: str) -> ctypes.CDLL | None:
    """kernels/<name>.c as a loaded library, built if needed; None if it cannot be built here."""
    if os.environ.get("QWEN_STACK_NATIVE", "1") == "0":
        return None
    src = KERNELS / f"{name}.c"
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        LOG.warning("no C compiler (gcc): native kernel %s unavailable, using the PyTorch reference", name)
        return None
    key = hashlib.sha256(b"\0".join([src.read_bytes(), " ".join(FLAGS + LINK_FLAGS).encode(), cc.encode(),
                                     _cpu_id().encode()])).hexdigest()[:16]
    cache = Path(os.environ.get("QWEN_STACK_KERNEL_CACHE") or Path.home() / ".cache" / "qwen_stack" / "kernels")
    so = cache / f"{name}-{key}.so"
    if not so.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".so.tmp")
        os.close(fd)
        obj = tmp[:-len(".so.tmp")] + ".o"
        r = subprocess.run([cc, *FLAGS, "-c", str(src), "-o", obj], capture_output=True, text=True)
        if r.returncode == 0:
            r = subprocess.run([cc, *LINK_FLAGS, obj, "-o", tmp, "-lm"], capture_output=True, text=True)
        if os.path.exists(obj):
            os.unlink(obj)
        if r.returncode != 0:
            os.unlink(tmp)
            LOG.warning("building native kernel %s failed, using the PyTorch reference:\n%s", name, r.stderr[-2000:])
            return None
        os.replace(tmp, so)                      # atomic: concurrent builders never load a half-written file
    return ctypes.CDLL(str(so))


@lru_cache(maxsize=None)
def _decode_attention_fn():
    lib = load("decode_attention")
    if lib is None:
        return None
    fn = lib.decode_attention
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 6 + [ctypes.c_float, ctypes.c_int]
    return fn


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, n: int) -> torch.Tensor | None:
    """q [B, Hq, 1, Dh] against cache rows 0..n-1 of k_cache, v_cache [B, Hkv, S, Dh] (contiguous, fp32 or bf16,
    CPU) -> [B, Hq, 1, Dh] in q's dtype; None when the kernel does not cover the inputs or is unavailable."""
    B, Hq, _, Dh = q.shape
    Hkv, S = k_cache.shape[1], k_cache.shape[2]
    if not (q.device.type == k_cache.device.type == "cpu" and k_cache.dtype in (torch.float32, torch.bfloat16)
            and v_cache.dtype == k_cache.dtype and k_cache.is_contiguous() and v_cache.is_contiguous()
            and v_cache.shape == k_cache.shape and k_cache.shape[0] == B and Hq % Hkv == 0):
        return None
    fn = _decode_attention_fn()
    if fn is None:
        return None
    G = Hq // Hkv
    qf = q.reshape(B, Hkv, G, Dh).float().contiguous()
    out = torch.empty(B, Hkv, G, Dh, dtype=torch.float32)
    scratch = torch.empty(B * Hkv * G * n, dtype=torch.float32)
    rc = fn(k_cache.data_ptr(), v_cache.data_ptr(), qf.data_ptr(), out.data_ptr(), scratch.data_ptr(),
            B, Hkv, G, Dh, S, n, Dh ** -0.5, int(k_cache.dtype == torch.bfloat16))
    if rc != 0:
        return None
    return out.view(B, Hq, 1, Dh).to(q.dtype)
