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


@lru_cache(maxsize=None)
def _nvfp4_lib():
    lib = load("nvfp4_matvec")
    if lib is None:
        return None
    lib.nvfp4_matvec.restype = lib.nvfp4_dequantize_rows.restype = lib.nvfp4_has_avx2.restype = ctypes.c_int
    lib.nvfp4_matvec.argtypes = ([ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2 + [ctypes.c_void_p, ctypes.c_int64,
                                 ctypes.c_void_p] + [ctypes.c_int64] * 3 + [ctypes.c_int])
    lib.nvfp4_dequantize_rows.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 2 + [ctypes.c_void_p, ctypes.c_int]
    return lib


def nvfp4_has_avx2() -> bool:
    """Whether the built NVFP4 kernel has its AVX2 path (False without the kernel)."""
    lib = _nvfp4_lib()
    return bool(lib is not None and lib.nvfp4_has_avx2())


def nvfp4_matvec(x: torch.Tensor, packed: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor,
                 experts: torch.Tensor | None = None, parts: int = 1, *, scalar: bool = False) -> torch.Tensor | None:
    """NVFP4 weight times activation rows, dequantizing inside the dot products (kernels/nvfp4_matvec.c).

    Plain weight (experts None): packed uint8 [O, in/2], block_scale e4m3 [O, in/16], global_scale fp32 []
    (or [parts]), x [1, in] -> fp32 [1, O]. Experts: packed [E, O, in/2], block_scale [E, O, in/16],
    global_scale [E, parts] or [E] (parts = 1), experts int [K]; x [1, in] (shared) or [K, in] (row k for
    expert k) -> fp32 [K, O]. x fp32 or bf16. scalar: force the plain-C path (tests).
    None when the inputs are not covered (not CPU, not contiguous, other dtypes) or the kernel is unavailable.
    Raises ValueError for shapes that disagree or expert indices out of range.
    """
    lead = packed.shape[:-1]
    n_in = packed.shape[-1] * 2
    if experts is None and packed.dim() != 2 or experts is not None and packed.dim() != 3:
        raise ValueError(f"nvfp4_matvec: packed {tuple(packed.shape)} does not fit experts={experts is not None}")
    if block_scale.shape != (*lead, n_in // 16) or x.dim() != 2 or x.shape[-1] != n_in:
        raise ValueError(f"nvfp4_matvec: shapes disagree: x {tuple(x.shape)}, packed {tuple(packed.shape)}, "
                         f"block_scale {tuple(block_scale.shape)}")
    k = 1 if experts is None else experts.numel()
    if x.shape[0] not in (1, k):
        raise ValueError(f"nvfp4_matvec: x has {x.shape[0]} rows, expected 1 or {k}")
    n_experts = 1 if experts is None else packed.shape[0]
    if global_scale.numel() != n_experts * parts or parts < 1 or lead[-1] % parts:
        raise ValueError(f"nvfp4_matvec: global_scale {tuple(global_scale.shape)} does not hold {parts} "
                         f"scale(s) for each of {n_experts} weight(s) of {lead[-1]} rows")
    if not (x.device.type == packed.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
            and packed.dtype == torch.uint8 and block_scale.dtype == torch.float8_e4m3fn
            and packed.is_contiguous() and block_scale.is_contiguous() and n_in % 16 == 0 and n_in >= 16):
        return None
    lib = _nvfp4_lib()
    if lib is None:
        if experts is not None and k and not 0 <= int(experts.min()) <= int(experts.max()) < n_experts:
            raise ValueError(f"nvfp4_matvec: expert index out of range 0..{n_experts - 1}: {experts.tolist()}")
        return None
    xf = x.float().contiguous()
    g = global_scale.float().contiguous()
    idx = None if experts is None else experts.to(torch.int64).contiguous()
    y = torch.empty(k, lead[-1], dtype=torch.float32)
    rc = lib.nvfp4_matvec(packed.data_ptr(), block_scale.data_ptr(), g.data_ptr(),
                          None if idx is None else idx.data_ptr(), n_experts, k, xf.data_ptr(),
                          n_in if x.shape[0] > 1 else 0, y.data_ptr(), lead[-1], n_in, parts, int(scalar))
    if rc == -2:                                  # checked in C: no extra passes over the indices here
        raise ValueError(f"nvfp4_matvec: expert index out of range 0..{n_experts - 1}: {experts.tolist()}")
    return y if rc == 0 else None


def nvfp4_dequantize_rows(packed: torch.Tensor, block_scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """E2M1[code] * e4m3(s) (no global scale) for packed uint8 [r, in/2], block_scale e4m3 [r, in/16] ->
    [r, in] in dtype (fp32 or bf16; exact in both); None when not covered or the kernel is unavailable."""
    if not (packed.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and packed.dim() == 2
            and packed.is_contiguous() and block_scale.is_contiguous() and packed.dtype == torch.uint8
            and block_scale.dtype == torch.float8_e4m3fn and block_scale.shape == (packed.shape[0], packed.shape[1] // 8)
            and packed.shape[1] % 8 == 0 and packed.shape[0] > 0 and packed.shape[1] > 0):
        return None
    lib = _nvfp4_lib()
    if lib is None:
        return None
    out = torch.empty(packed.shape[0], packed.shape[1] * 2, dtype=dtype)
    rc = lib.nvfp4_dequantize_rows(packed.data_ptr(), block_scale.data_ptr(), packed.shape[0], packed.shape[1] * 2,
                                   out.data_ptr(), int(dtype == torch.bfloat16))
    return out if rc == 0 else None
