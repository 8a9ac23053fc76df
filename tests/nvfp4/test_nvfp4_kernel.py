"""The fused NVFP4 matvec C kernel (kernels/nvfp4_matvec.c) against the dequantize + F.linear reference.

Inputs are fresh random each run (the seed is printed on failure): random packed bytes cover every code,
negative zero (code 8) and the saturated codes 7 / 15 included; random scale bytes cover E4M3 subnormals and
448; zero blocks (codes 0, and scale 0) are planted; row counts are odd and widths multiples of 16 but not
of 64 (the kernel's tail path). Tolerance: fp32 accumulation rounding, per output row
|got - want| <= in * 2**-22 * sum_i |W'_ri x_i| (the two sum in different orders, both in fp32).
"""
from __future__ import annotations

import pytest
import torch

from qwen_stack.qwen_node.engine import native
from qwen_stack.qwen_node.engine.nvfp4 import (
    NVFP4Linear,
    NVFP4Tensor,
    dequantize_nvfp4,
    dequantize_rows,
    nvfp4_linear_reference,
    nvfp4_matvec,
    quantize_nvfp4,
)
from qwen_stack.qwen_node.engine.nvfp4_loader import NVFP4Experts

# (rows, in): odd rows; widths 16, 48, 80, 208 (not multiples of 64), 1040 (= 16 * 65: main loop + tail);
# for the bf16 path's 128-value chunks: 128 (one chunk), 384 (three: a pair and a single), 1200 (9 chunks + 3
# blocks); 4096 x 256 and 9 x 2048 take the OpenMP path (rows * in >= 2**18)
SHAPES = [(1, 16), (7, 48), (33, 80), (129, 208), (65, 1040), (4097, 256), (9, 2048), (300, 64), (5, 128),
          (31, 384), (17, 1200)]


def _seed() -> int:
    return int(torch.randint(0, 2**31, ()))


def random_weight(lead: tuple[int, ...], n_in: int, gen: torch.Generator) -> NVFP4Tensor:
    """Random stored bytes: every code and every finite E4M3 scale, plus zero blocks."""
    packed = torch.randint(0, 256, (*lead, n_in // 2), dtype=torch.uint8, generator=gen)
    scale_bytes = torch.randint(0, 0x7F, (*lead, n_in // 16), dtype=torch.uint8, generator=gen)  # no NaN, 0..448
    scale_bytes[..., 0] = 0x7E                                             # 448, the largest block scale
    blocks = packed.view(*lead, n_in // 16, 8)
    zero = torch.rand(blocks.shape[:-1], generator=gen) < 0.1
    blocks[zero] = 0                                                       # all-zero codes
    scale_bytes[torch.rand(scale_bytes.shape, generator=gen) < 0.05] = 0  # scale 0
    blocks[torch.rand(blocks.shape[:-1], generator=gen) < 0.05] = 0x88   # negative zeros
    blocks[torch.rand(blocks.shape[:-1], generator=gen) < 0.05] = 0xF7   # saturated: +6 and -6
    g = torch.rand((), generator=gen) * 1e-2 + 1e-4
    return NVFP4Tensor(packed, scale_bytes.view(torch.float8_e4m3fn), g.float())


def assert_within_fp32_rounding(got: torch.Tensor, w: torch.Tensor, x: torch.Tensor, seed: int) -> None:
    """got [K, O] vs x [K or 1, in] @ w^T, w [K or 1, O, in] or [O, in], all in fp32."""
    want = x.float() @ w.float().transpose(-1, -2) if w.dim() == 2 else torch.einsum("ki,koi->ko", x.float(), w.float())
    mag = x.float().abs() @ w.float().abs().transpose(-1, -2) if w.dim() == 2 else \
        torch.einsum("ki,koi->ko", x.float().abs(), w.float().abs())
    bound = w.shape[-1] * 2.0**-22 * mag + 1e-30
    assert got.shape == want.shape and got.dtype == torch.float32
    assert torch.isfinite(got).all(), f"seed {seed}"
    worst = float(((got - want).abs() / bound).max())
    assert worst <= 1.0, f"seed {seed}: error {worst:.3g} x the fp32 rounding bound"


def test_kernel_builds_here_with_its_vector_path():
    """The test command installs gcc: a kernel that stopped building must fail loudly (the AVX2 path is
    required where the CPU has AVX2)."""
    assert native.nvfp4_op() is not None
    flags = open("/proc/cpuinfo").read()
    if "avx2" in flags:
        assert native.nvfp4_has_avx2()
    if "avx512_bf16" in flags:
        assert native.nvfp4_has_avx512bf16()


@pytest.mark.parametrize("scalar", [False, True], ids=["vector", "scalar"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])   # bf16: the AVX512-BF16 path where built
@pytest.mark.parametrize("rows, n_in", SHAPES)
def test_matvec_matches_reference(rows, n_in, dtype, scalar):
    seed = _seed()
    gen = torch.Generator().manual_seed(seed)
    q = random_weight((rows,), n_in, gen)
    x = torch.randn(1, n_in, generator=gen).to(dtype)
    x[0, : min(16, n_in)] = 0.0                                            # a zero activation block too
    got = native.nvfp4_matvec(x, q.packed, q.block_scale, q.global_scale, scalar=scalar)
    assert got is not None
    assert_within_fp32_rounding(got, dequantize_nvfp4(q), x, seed)         # reference: fp32 on the same x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nan_block_scales_give_nan_rows_and_leave_the_others(dtype):
    """An E4M3 NaN scale byte (0x7f / 0xff; never written by the quantizer) makes its row NaN, as in the reference;
    the vector paths decode scales without NaN handling, so such rows take the plain path."""
    seed = _seed()
    gen = torch.Generator().manual_seed(seed)
    q = random_weight((37,), 1040, gen)
    raw = q.block_scale.view(torch.uint8)
    raw[3, 5], raw[20, 64], raw[36, 0] = 0x7F, 0xFF, 0x7F                  # first, last (tail) and a middle block
    x = torch.randn(1, 1040, generator=gen).to(dtype)
    got = native.nvfp4_matvec(x, q.packed, q.block_scale, q.global_scale)
    nan_rows = [3, 20, 36]
    assert torch.isnan(got[0, nan_rows]).all(), f"seed {seed}"
    keep = [r for r in range(37) if r not in nan_rows]
    assert_within_fp32_rounding(got[:, keep], dequantize_nvfp4(q)[keep], x, seed)


def test_quantized_weights_with_outliers_match_reference():
    """Weights through the quantizer: zero rows, tiny blocks next to a huge outlier (subnormal E4M3 scales)."""
    seed = _seed()
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(77, 208, generator=gen)
    w[3] = 0.0
    w[5, 17] = 1e4
    w[6, :16] = -0.0
    q = quantize_nvfp4(w)
    x = torch.randn(1, 208, generator=gen)
    assert_within_fp32_rounding(native.nvfp4_matvec(x, q.packed, q.block_scale, q.global_scale),
                                dequantize_nvfp4(q), x, seed)
    assert torch.allclose(nvfp4_matvec(x, q.packed, q.block_scale, q.global_scale), nvfp4_linear_reference(x, q),
                          rtol=1e-5, atol=1e-6 * float(nvfp4_linear_reference(x, q).abs().max()))


@pytest.mark.parametrize("scalar", [False, True], ids=["vector", "scalar"])
@pytest.mark.parametrize("dtype, n_in", [(torch.float32, 80), (torch.bfloat16, 80), (torch.bfloat16, 400)])
@pytest.mark.parametrize("parts, shared_x", [(2, True), (1, False), (1, True)])
def test_experts_matvec_reads_the_selected_experts_in_place(parts, shared_x, dtype, n_in, scalar):
    seed = _seed()
    gen = torch.Generator().manual_seed(seed)
    E, O, K = 6, 2 * 37, 4
    q = random_weight((E, O), n_in, gen)
    g = torch.rand(E, parts, generator=gen) * 1e-2 + 1e-4
    g = g if parts > 1 else g[:, 0]
    experts = torch.tensor([4, 0, 4, 5])                                   # a repeated expert too
    x = torch.randn(1 if shared_x else K, n_in, generator=gen).to(dtype)
    got = native.nvfp4_matvec(x, q.packed, q.block_scale, g, experts, parts, scalar=scalar)
    w = torch.stack([torch.cat([dequantize_nvfp4(NVFP4Tensor(q.packed[e, p * (O // parts):(p + 1) * (O // parts)],
                                                             q.block_scale[e, p * (O // parts):(p + 1) * (O // parts)],
                                                             g.reshape(E, parts)[e, p]))
                                for p in range(parts)]) for e in experts.tolist()])   # [K, O, in]
    assert_within_fp32_rounding(got, w, x.expand(K, n_in), seed)


def test_bad_inputs_raise_clear_errors():
    q = random_weight((4, 3), 32, torch.Generator().manual_seed(0))
    g = torch.ones(4)
    with pytest.raises(ValueError, match="expert index out of range"):
        native.nvfp4_matvec(torch.randn(1, 32), q.packed, q.block_scale, g, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="shapes disagree"):
        native.nvfp4_matvec(torch.randn(1, 48), q.packed, q.block_scale, g, torch.tensor([0]))
    with pytest.raises(ValueError, match="rows"):
        native.nvfp4_matvec(torch.randn(3, 32), q.packed, q.block_scale, g, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="global_scale"):
        native.nvfp4_matvec(torch.randn(1, 32), q.packed, q.block_scale, torch.ones(4, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match="dtypes"):
        native.nvfp4_matvec(torch.randn(1, 32), q.packed.view(torch.int8), q.block_scale, g, torch.tensor([0]))


def test_failed_operator_build_is_logged_and_returns_none(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("QWEN_STACK_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "KERNELS", tmp_path)
    (tmp_path / "ok.c").write_text("int f(void) { return 0; }")
    (tmp_path / "broken_ops.cpp").write_text("#include <torch/library.h>\nTORCH_LIBRARY(broken, m) {")
    with caplog.at_level("WARNING"):
        assert native.torch_ops("broken_ops", ("ok",)) is None
    assert "building native kernel broken_ops failed" in caplog.text
    assert not list(tmp_path.glob("*.so*")) and not list(tmp_path.glob("*.o"))   # nothing half-written left


def test_other_float_dtypes_and_strided_weights_are_covered():
    """fp16 activations are computed in fp32 (result in fp16); a strided weight is read through a copy."""
    seed = _seed()
    gen = torch.Generator().manual_seed(seed)
    q = random_weight((2, 37), 96, gen)
    w = NVFP4Tensor(q.packed[:, 5], q.block_scale[:, 5], q.global_scale)       # rows 5 of both: not contiguous
    x = torch.randn(1, 96, generator=gen).half()
    got = nvfp4_matvec(x, w.packed, w.block_scale, w.global_scale)
    want = nvfp4_linear_reference(x.float(), w)
    assert got.dtype == torch.float16
    assert torch.allclose(got.float(), want, rtol=2e-3, atol=1e-3 * float(want.abs().max())), f"seed {seed}"
    assert_within_fp32_rounding(native.nvfp4_matvec(x, w.packed, w.block_scale, w.global_scale),
                                dequantize_nvfp4(w), x.float(), seed)


@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("n_in", [16, 208, 1024])
def test_c_tile_dequantize_is_bit_identical_to_the_reference(parts, n_in):
    """The prefill tile (C) holds dequantize_nvfp4's values bit for bit: every code (-0 included), subnormal and
    largest scales, zero blocks; a fused weight's two row groups each with their own global scale."""
    seed = _seed()
    gen = torch.Generator().manual_seed(seed)
    q = random_weight((2 * 45,), n_in, gen)
    g = torch.rand(parts, generator=gen) * 1e-2 + 1e-4
    for dtype in (torch.float32, torch.bfloat16):
        fast = native.nvfp4_dequantize(q.packed, q.block_scale, g if parts > 1 else g[0], dtype)
        want = torch.cat([dequantize_nvfp4(NVFP4Tensor(q.packed[p * 45 * 2 // parts:(p + 1) * 45 * 2 // parts],
                                                       q.block_scale[p * 45 * 2 // parts:(p + 1) * 45 * 2 // parts],
                                                       g[p]), dtype) for p in range(parts)])
        bits = torch.int16 if dtype == torch.bfloat16 else torch.int32
        assert fast is not None and torch.equal(fast.view(bits), want.view(bits)), f"seed {seed}"
        assert torch.equal(dequantize_rows(q.packed, q.block_scale, g if parts > 1 else g[0], dtype).view(bits),
                           want.view(bits))


def _modules(gen):
    lin = NVFP4Linear(random_weight((37,), 80, gen), bias=torch.randn(37, generator=gen))
    E, D, I = 5, 48, 32
    ex = NVFP4Experts(E, D, I)
    for wts, out_f, in_f, parts in ((ex.gate_up_proj, 2 * I, D, 2), (ex.down_proj, D, I, 1)):
        q = random_weight((E, out_f), in_f, gen)
        wts.weight.copy_(q.packed)
        wts.weight_scale.copy_(q.block_scale)
        wts.weight_scale_2.copy_(torch.rand(wts.weight_scale_2.shape, generator=gen) * 1e-2 + 1e-3)
    return lin, ex


def test_forced_fallback_gives_the_same_results(monkeypatch):
    """With the C kernel off (QWEN_STACK_NATIVE=0, as without a compiler) the decode ops take the tiled
    PyTorch path; both agree with the reference."""
    seed = _seed()
    gen = torch.Generator().manual_seed(seed)
    lin, ex = _modules(gen)
    x = torch.randn(1, 1, 80, generator=gen)
    xe = torch.randn(1, 48, generator=gen)
    top_w, top_idx = torch.rand(1, 5, generator=gen).softmax(-1).topk(2, dim=-1)
    results = {}
    for native_on in (True, False):
        monkeypatch.setenv("QWEN_STACK_NATIVE", "1" if native_on else "0")
        if not native_on:
            assert native.nvfp4_matvec(x[0], lin.weight, lin.weight_scale, lin.weight_scale_2) is None
            assert native.nvfp4_dequantize(lin.weight, lin.weight_scale, lin.weight_scale_2, torch.float32) is None
        with torch.no_grad():
            calls = kernel_calls(lambda: results.__setitem__(native_on, (lin(x), ex(xe, top_idx, top_w))))
        assert calls == (3 if native_on else 0)
    monkeypatch.delenv("QWEN_STACK_NATIVE")
    want_lin, want_ex = lin.forward_reference(x), ex.forward_reference(xe, top_idx, top_w)
    for got_lin, got_ex in results.values():
        assert torch.allclose(got_lin, want_lin, rtol=1e-5, atol=1e-5 * float(want_lin.abs().max())), f"seed {seed}"
        assert torch.allclose(got_ex, want_ex, rtol=1e-5, atol=1e-5 * float(want_ex.abs().max())), f"seed {seed}"


def kernel_calls(fn) -> int:
    """How many times fn calls the fused kernel's operator (as the profiler sees the dispatcher)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == "qwen_stack_nvfp4::matvec")


def test_decode_modules_use_the_kernel():
    """One token through NVFP4Linear / NVFP4Experts goes to the fused kernel (the experts' two calls: gate_up
    and down), several tokens to the tiled path; bf16 activations give the reference's result to bf16."""
    seed = _seed()
    gen = torch.Generator().manual_seed(seed)
    lin, ex = _modules(gen)
    top_w, top_idx = torch.rand(1, 5, generator=gen).softmax(-1).topk(3, dim=-1)
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(1, 80, generator=gen).to(dtype)
            xe = torch.randn(1, 48, generator=gen).to(dtype)
            out = {}
            assert kernel_calls(lambda: out.update(lin=lin(x), ex=ex(xe, top_idx, top_w.to(dtype)))) == 3
            got, want = out["lin"], lin.forward_reference(x.float())              # bf16 x upcasts exactly
            assert got.dtype == dtype and torch.allclose(got.float(), want.float(), rtol=2e-2, atol=2e-2 * float(want.abs().max()))
            got, want = out["ex"], ex.forward_reference(xe.float(), top_idx, top_w.to(dtype).float())
            assert got.dtype == dtype and (got.float() - want.float()).abs().max() <= 3e-2 * want.float().abs().max()
        assert kernel_calls(lambda: lin(torch.randn(3, 80, generator=gen))) == 0   # prefill: the tiled path
