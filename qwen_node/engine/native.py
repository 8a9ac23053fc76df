"""Small C kernels (kernels/*.c) beside their PyTorch references, built on first use with the system C compiler.

Build: gcc -O3 -march=native -ffast-math -fopenmp into $QWEN_STACK_KERNEL_CACHE (default
~/.cache/qwen_stack/kernels), keyed by source, flags, compiler and CPU, so a shared home folder never serves
code built for another CPU; loaded with ctypes. OpenMP: the library's libgomp soname matches the one PyTorch has
loaded, so the kernels share torch's thread pool and thread count.
Without a compiler, after a failed build, with QWEN_STACK_NATIVE=0 or for inputs a kernel does not cover, callers
get None and use the PyTorch reference (a failed build is logged once).

The NVFP4 kernel is also a PyTorch operator (kernels/nvfp4_ops.cpp, `torch.ops.qwen_stack_nvfp4.matvec`): that
C++ file is compiled with g++ against torch's headers, linked with nvfp4_matvec.c into one library (cached the same
way, keyed by torch's version too) and loaded with torch.ops.load_library, so a compiled graph calls the kernel
without any Python in between. Its C functions are reached with ctypes from the same library.
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


def enabled() -> bool:
    """QWEN_STACK_NATIVE=0 turns every kernel off (read on each call: tests switch it)."""
    return os.environ.get("QWEN_STACK_NATIVE", "1") != "0"


def _build(name: str, objects: list[tuple[Path, list[str]]], link: list[str], key_extra: str = "") -> Path | None:
    """Compile each (source, compiler + flags) to an object, link them with `link` into a cached library.
    None (logged) when a step fails."""
    key = hashlib.sha256(b"\0".join([*(src.read_bytes() + " ".join(cmd).encode() for src, cmd in objects),
                                     " ".join(link).encode(), _cpu_id().encode(), key_extra.encode()])).hexdigest()[:16]
    cache = Path(os.environ.get("QWEN_STACK_KERNEL_CACHE") or Path.home() / ".cache" / "qwen_stack" / "kernels")
    so = cache / f"{name}-{key}.so"
    if so.exists():
        return so
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".so.tmp")
    os.close(fd)
    objs = [f"{tmp[:-len('.so.tmp')]}-{i}.o" for i in range(len(objects))]
    r = None
    for (src, cmd), obj in zip(objects, objs):
        r = subprocess.run([*cmd, "-c", str(src), "-o", obj], capture_output=True, text=True)
        if r.returncode != 0:
            break
    else:
        r = subprocess.run([link[0], *objs, "-o", tmp, *link[1:]], capture_output=True, text=True)
    for obj in objs:
        if os.path.exists(obj):
            os.unlink(obj)
    if r.returncode != 0:
        os.unlink(tmp)
        LOG.warning("building native kernel %s failed, using the PyTorch reference:\n%s", name, r.stderr[-2000:])
        return None
    os.replace(tmp, so)                          # atomic: concurrent builders never load a half-written file
    return so


def _c_compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


@lru_cache(maxsize=None)
def load(name: str) -> ctypes.CDLL | None:
    """kernels/<name>.c as a loaded library, built if needed; None if it cannot be built here."""
    if not enabled():
        return None
    cc = _c_compiler()
    if cc is None:
        LOG.warning("no C compiler (gcc): native kernel %s unavailable, using the PyTorch reference", name)
        return None
    so = _build(name, [(KERNELS / f"{name}.c", [cc, *FLAGS])], [cc, *LINK_FLAGS, "-lm"])
    return None if so is None else ctypes.CDLL(str(so))


@lru_cache(maxsize=None)
def torch_ops(name: str, c_sources: tuple[str, ...]) -> Path | None:
    """kernels/<name>.cpp (TORCH_LIBRARY registrations) linked with kernels/<c_sources>.c, built if needed and
    loaded into torch.ops (once per process: a library's operators can be registered only once). Returns the
    library's path (its C functions: ctypes.CDLL of it), None if it cannot be built here. Ignores enabled():
    callers check it, so that switching the kernels off and on again in one process works."""
    cc, cxx = _c_compiler(), os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cc is None or cxx is None:
        LOG.warning("no C/C++ compiler (gcc, g++): native operator %s unavailable, using the PyTorch reference", name)
        return None
    root = Path(torch.__file__).parent
    cxx_flags = ["-O2", "-std=c++20", "-fPIC", "-w", f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
                 f"-I{root / 'include'}", f"-I{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}"]
    objects = [(KERNELS / f"{c}.c", [cc, *FLAGS]) for c in c_sources] + [(KERNELS / f"{name}.cpp", [cxx, *cxx_flags])]
    # link without -ffast-math (see FLAGS); c10 and torch_cpu are already loaded in this process
    so = _build(name, objects, [cxx, *LINK_FLAGS, f"-L{root / 'lib'}", "-lc10", "-ltorch_cpu", "-lm"],
                key_extra=f"{torch.__version__} {torch.version.git_version}")
    if so is None:
        return None
    torch.ops.load_library(str(so))
    return so


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
def _nvfp4_library() -> Path | None:
    so = torch_ops("nvfp4_ops", ("nvfp4_matvec",))
    if so is None:
        return None

    @torch.library.register_fake("qwen_stack_nvfp4::matvec")
    def _(x, packed, block_scale, global_scale, experts=None, parts=1, scalar=False, fp32_out=False):
        return x.new_empty(1 if experts is None else experts.shape[0], packed.shape[-2],
                           dtype=torch.float32 if fp32_out else x.dtype)

    return so


@lru_cache(maxsize=None)
def _nvfp4_ctypes(so: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(so))
    lib.nvfp4_dequantize.restype = lib.nvfp4_has_avx2.restype = lib.nvfp4_has_avx512bf16.restype = ctypes.c_int
    lib.nvfp4_dequantize.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int]
    return lib


def _nvfp4_lib() -> ctypes.CDLL | None:
    """The NVFP4 library's C functions (ctypes), None when the kernels are off or unavailable."""
    so = _nvfp4_library() if enabled() else None
    return None if so is None else _nvfp4_ctypes(so)


def nvfp4_op():
    """torch.ops.qwen_stack_nvfp4.matvec (kernels/nvfp4_ops.cpp: the fused kernel as an operator), None when the
    kernels are off (QWEN_STACK_NATIVE=0) or it cannot be built here. Arguments and result: see nvfp4_matvec."""
    if not enabled() or _nvfp4_library() is None:
        return None
    return torch.ops.qwen_stack_nvfp4.matvec.default


def nvfp4_has_avx2() -> bool:
    """Whether the built NVFP4 kernel has its AVX2 path (False without the kernel)."""
    lib = _nvfp4_lib()
    return bool(lib is not None and lib.nvfp4_has_avx2())


def nvfp4_has_avx512bf16() -> bool:
    """Whether the built NVFP4 kernel has its AVX512-BF16 path for bf16 activations (False without the kernel)."""
    lib = _nvfp4_lib()
    return bool(lib is not None and lib.nvfp4_has_avx512bf16())


def nvfp4_matvec(x: torch.Tensor, packed: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor,
                 experts: torch.Tensor | None = None, parts: int = 1, *, scalar: bool = False) -> torch.Tensor | None:
    """NVFP4 weight times activation rows, dequantizing inside the dot products (kernels/nvfp4_matvec.c), fp32
    result (for tests and benches; the engine calls the operator, whose result is in x's dtype).

    Plain weight (experts None): packed uint8 [O, in/2], block_scale e4m3 [O, in/16], global_scale fp32 []
    (or [parts]), x [1, in] -> fp32 [1, O]. Experts: packed [E, O, in/2], block_scale [E, O, in/16],
    global_scale [E, parts] or [E] (parts = 1), experts int [K]; x [1, in] (shared) or [K, in] (row k for
    expert k) -> fp32 [K, O]. x any float dtype (fp32 and bf16 read as they are). scalar: force the plain-C path.
    None when the kernel is unavailable or the tensors are not on the CPU. Raises ValueError for shapes that
    disagree or expert indices out of range.
    """
    op = nvfp4_op()
    if op is None or not all(t.device.type == "cpu" for t in (x, packed, block_scale, global_scale)):
        return None
    return op(x, packed, block_scale, global_scale, experts, parts, scalar, True)


def nvfp4_dequantize(packed: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor,
                     dtype: torch.dtype) -> torch.Tensor | None:
    """Rows of a weight dequantized exactly as nvfp4.dequantize_nvfp4 does: packed uint8 [r, in/2], block_scale e4m3
    [r, in/16], global_scale fp32 [] or [parts] (row groups of r / parts rows) -> [r, in] in dtype (fp32 or bf16);
    None when not covered or the kernel is unavailable."""
    if not (packed.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and packed.dim() == 2
            and packed.is_contiguous() and block_scale.is_contiguous() and packed.dtype == torch.uint8
            and block_scale.dtype == torch.float8_e4m3fn and block_scale.shape == (packed.shape[0], packed.shape[1] // 8)
            and packed.shape[1] % 8 == 0 and packed.shape[0] > 0 and packed.shape[1] > 0
            and global_scale.dtype == torch.float32 and global_scale.dim() <= 1 and global_scale.numel() >= 1
            and packed.shape[0] % global_scale.numel() == 0):
        return None
    lib = _nvfp4_lib()
    if lib is None:
        return None
    g = global_scale.contiguous()
    out = torch.empty(packed.shape[0], packed.shape[1] * 2, dtype=dtype)
    rc = lib.nvfp4_dequantize(packed.data_ptr(), block_scale.data_ptr(), g.data_ptr(), g.numel(), packed.shape[0],
                              packed.shape[1] * 2, out.data_ptr(), int(dtype == torch.bfloat16))
    return out if rc == 0 else None
