"""C kernels (engine/native.py) against their PyTorch references on fresh random inputs."""
from __future__ import annotations

import pytest
import torch

from qwen_stack.qwen_node.engine import native
from qwen_stack.qwen_node.engine.model import decode_attention, decode_attention_reference


def test_decode_attention_kernel_builds_here():
    """The test command installs gcc (scripts/bootstrap.sh): a kernel that stopped building must fail loudly."""
    assert native.load("decode_attention") is not None


def test_loading_a_kernel_leaves_the_process_floating_point_mode_alone():
    """A -ffast-math library linked with crtfastmath.o would switch the process to flush-to-zero on load."""
    import subprocess
    import sys
    code = ("import torch; from qwen_stack.qwen_node.engine import native; assert native.load('decode_attention'); "
            "x = torch.tensor([1e-38]) / 1000; y = 1e-308 / 1000; print(x.item() != 0 and y != 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stdout + out.stderr


# (batch, kv heads, query heads per kv head, head dim, rows used, cache capacity); head dims not a multiple of
# 16 take the kernel's scalar path; n * pairs >= 8192 its OpenMP path
SHAPES = [(1, 2, 4, 128, 1, 8), (1, 2, 4, 128, 1500, 1600), (2, 1, 3, 64, 777, 800), (1, 3, 1, 24, 40, 41),
          (2, 2, 6, 16, 5000, 5003), (1, 1, 8, 256, 9000, 9000)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B, Hkv, G, Dh, n, S", SHAPES)
def test_decode_attention_kernel_matches_reference(dtype, B, Hkv, G, Dh, n, S):
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    q = torch.randn(B, Hkv * G, 1, Dh, generator=g).to(dtype)
    k_cache = (2 * torch.randn(B, Hkv, S, Dh, generator=g)).to(dtype)      # peaky softmax, not a flat average
    v_cache = torch.randn(B, Hkv, S, Dh, generator=g).to(dtype)
    got = native.decode_attention(q, k_cache, v_cache, n)
    assert got is not None and got.shape == q.shape and got.dtype == dtype
    # the reference in fp32 on the same (exactly upcast) inputs; the kernel computes in fp32 throughout
    want = decode_attention_reference(q.float(), k_cache[:, :, :n].float(), v_cache[:, :, :n].float())
    tol = 1e-5 if dtype == torch.float32 else 8e-3                          # bf16: the output's own rounding
    assert ((got.float() - want).abs().max() / want.abs().max()) < tol


def test_inputs_the_kernel_does_not_cover_use_the_reference():
    q = torch.randn(1, 4, 1, 16, dtype=torch.float64)
    cache = torch.randn(1, 2, 10, 16, dtype=torch.float64)
    assert native.decode_attention(q, cache, cache, 5) is None                 # fp64: not covered
    strided = torch.randn(1, 2, 10, 32)[..., :16]
    assert native.decode_attention(q.float(), strided, strided, 5) is None      # not contiguous
    k, v = torch.randn(1, 2, 1, 16, dtype=torch.float64), torch.randn(1, 2, 1, 16, dtype=torch.float64)
    k_cache, v_cache = cache.clone(), torch.randn(1, 2, 10, 16, dtype=torch.float64)
    want = decode_attention_reference(q, torch.cat([k_cache[:, :, :5], k], 2), torch.cat([v_cache[:, :, :5], v], 2))
    out = decode_attention(q, k, v, k_cache, v_cache, 5)                       # the op falls back to the reference
    assert torch.equal(k_cache[:, :, 5:6], k) and torch.equal(v_cache[:, :, 5:6], v)   # wrote the new row
    assert torch.allclose(out, want)


def test_native_off_switch(monkeypatch):
    monkeypatch.setenv("QWEN_STACK_NATIVE", "0")
    native.load.cache_clear()
    try:
        assert native.load("decode_attention") is None
    finally:
        monkeypatch.delenv("QWEN_STACK_NATIVE")
        native.load.cache_clear()
    assert native.load("decode_attention") is not None


def test_failed_build_is_logged_and_returns_none(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("QWEN_STACK_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "KERNELS", tmp_path)
    (tmp_path / "broken.c").write_text("int f( {")
    with caplog.at_level("WARNING"):
        assert native.load("broken") is None
    assert "building native kernel broken failed" in caplog.text
    assert not list(tmp_path.glob("*.so*"))                                    # no half-written library left
