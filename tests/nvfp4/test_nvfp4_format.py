"""NVFP4 format: bit-exactness with ModelOpt, fast path vs plain reference, packing, linear."""
from __future__ import annotations

import pytest
import torch

from qwen_stack.qwen_node.engine.nvfp4 import (
    E2M1_VALUES,
    NVFP4Linear,
    NVFP4Tensor,
    dequantize_nvfp4,
    e2m1_codes,
    nvfp4_linear,
    nvfp4_linear_reference,
    pack_nibbles,
    quantize_nvfp4,
    quantize_nvfp4_reference,
    unpack_nibbles,
)

SHAPES = [(16,), (1, 16), (3, 32), (8, 48), (33, 64), (64, 128), (2, 5, 32), (4, 16, 64)]
DTYPES = [torch.float32, torch.bfloat16]


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype == torch.float8_e4m3fn:
        a, b = a.view(torch.uint8), b.view(torch.uint8)
    return a.shape == b.shape and torch.equal(a, b)


def _with_special_values(w: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random w with a zero block, negative zeros, a tiny (but not degenerate) block and outliers."""
    w = w.clone()
    flat = w.reshape(-1, w.shape[-1])
    rows = flat.shape[0]
    if flat.numel() > 16:
        flat[0, :16] = 0.0  # all-zero block -> scale 1
    if flat.numel() > 32:
        idx = torch.randint(0, flat.numel(), (4,), generator=gen)
        flat.view(-1)[idx] = -0.0
    if rows > 2:
        flat[1, :16] *= 1e-2  # small block: scale far below 1 but representable
        flat[2, 0] = 40.0  # outlier sets the global amax
    return w


def _modelopt(NVFP4QTensor, w: torch.Tensor):
    qt, scale, global_scale = NVFP4QTensor.quantize(w.clone(), 16)
    return qt, scale, global_scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_bit_exact_with_modelopt_random(modelopt_nvfp4, shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    w = _with_special_values(torch.randn(shape, generator=gen) * 0.05, gen).to(dtype)
    qt, scale, global_scale = _modelopt(modelopt_nvfp4, w)
    ours = quantize_nvfp4(w)
    assert _same_bits(ours.packed, qt._quantized_data)
    assert _same_bits(ours.block_scale, scale)
    assert _same_bits(ours.global_scale, global_scale.reshape(()))
    # dequantized values identical too
    expected = qt.dequantize(dtype=torch.float32, scale=scale, double_scale=global_scale, block_sizes={-1: 16})
    assert torch.equal(dequantize_nvfp4(ours, torch.float32), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_saturation_and_signs_match_modelopt(modelopt_nvfp4, dtype):
    # global amax 2688 -> global scale exactly 1.0; a block with amax 6 -> block scale 1.0, so the
    # block's scaled values are the values themselves and every midpoint is an exact tie.
    ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0]
    row_ties = torch.tensor(ties + [-t for t in ties])
    row_misc = torch.tensor([-0.0, 0.0, -0.1, 0.1, -0.24, 0.26, 5.99, -5.99, 0.5, -0.5, 1, -1, 3, -3, 4, 6.0])
    # block amax 6.375 -> 6.375/6 = 1.0625 rounds (tie, to even) to scale 1.0: 6.375 saturates to 6
    row_sat = torch.tensor([6.375, -6.375, 6.2, -6.1] + [0.3] * 12)
    row_amax = torch.zeros(16)
    row_amax[3] = 2688.0
    w = torch.stack([row_ties, row_misc, row_sat, row_amax]).to(dtype)
    qt, scale, global_scale = _modelopt(modelopt_nvfp4, w)
    ours = quantize_nvfp4(w)
    assert float(ours.global_scale) == 1.0
    assert _same_bits(ours.packed, qt._quantized_data)
    assert _same_bits(ours.block_scale, scale)
    codes = unpack_nibbles(ours.packed)
    # hand-derived: ties go to the even code, the sign bit follows x < 0
    assert codes[0, :8].tolist() == [0, 2, 2, 4, 4, 6, 6, 7]
    assert codes[0, 8:].tolist() == [8, 10, 10, 12, 12, 14, 14, 15]
    assert codes[1, :4].tolist() == [0, 0, 8, 0]  # -0.0 -> +0; -0.1 -> code 8 ("-0")
    assert codes[2, :4].tolist() == [7, 15, 7, 15]  # saturated at +-6


def test_codes_of_all_e2m1_values_round_trip():
    values = E2M1_VALUES.clone()
    assert unpack_nibbles(pack_nibbles(e2m1_codes(values))).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 9, 10, 11, 12, 13, 14, 15]


def test_pack_puts_even_element_in_low_nibble():
    codes = torch.tensor([[1, 2, 15, 0]], dtype=torch.uint8)
    assert pack_nibbles(codes).tolist() == [[0x21, 0x0F]]
    assert unpack_nibbles(pack_nibbles(codes)).tolist() == codes.tolist()
    gen = torch.Generator().manual_seed(3)
    codes = torch.randint(0, 16, (7, 10, 32), generator=gen, dtype=torch.uint8)
    assert torch.equal(unpack_nibbles(pack_nibbles(codes)), codes)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clamp", [True, False])
@pytest.mark.parametrize("shape", [(4, 32), (3, 2, 48)])
def test_fast_path_equals_plain_reference(shape, dtype, clamp):
    gen = torch.Generator().manual_seed(11)
    w = _with_special_values(torch.randn(shape, generator=gen), gen)
    w.reshape(-1, shape[-1])[-1, 16:32] = 1e-12  # degenerate block (ModelOpt scale 0)
    w = w.to(dtype)
    fast, ref = quantize_nvfp4(w, clamp_block_scale=clamp), quantize_nvfp4_reference(w, clamp_block_scale=clamp)
    assert _same_bits(fast.packed, ref.packed)
    assert _same_bits(fast.block_scale, ref.block_scale)
    assert _same_bits(fast.global_scale, ref.global_scale)


def test_degenerate_block_unclamped_is_modelopt_and_clamped_keeps_it(modelopt_nvfp4):
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(4, 64, generator=gen).clamp(-2.5, 2.5)
    w[0, 0] = 3.0  # global amax 3: blocks with amax <= 3 * 2**-10 / 448 = 6.5e-6 are degenerate
    w[2, 16:32] = torch.linspace(-4e-6, 4e-6, 16)
    qt, scale, global_scale = _modelopt(modelopt_nvfp4, w)
    assert float(scale[2, 1].float()) == 0.0  # ModelOpt loses the block
    unclamped = quantize_nvfp4(w, clamp_block_scale=False)
    assert _same_bits(unclamped.packed, qt._quantized_data)
    assert _same_bits(unclamped.block_scale, scale)
    clamped = quantize_nvfp4(w)
    assert float(clamped.block_scale[2, 1].float()) == 2.0**-9
    # every other block identical
    other = torch.ones(4, 4, dtype=torch.bool)
    other[2, 1] = False
    assert torch.equal(clamped.block_scale.view(torch.uint8)[other], scale.view(torch.uint8)[other])
    block = w[2, 16:32]
    err_clamped = (dequantize_nvfp4(clamped)[2, 16:32] - block).norm()
    err_modelopt = (dequantize_nvfp4(unclamped)[2, 16:32] - block).norm()
    assert err_clamped < err_modelopt


def test_all_zero_tensor_gives_zero_codes_and_unit_scales():
    q = quantize_nvfp4(torch.zeros(2, 32))
    assert float(q.global_scale) == 0.0
    assert torch.all(q.packed == 0)
    assert torch.all(q.block_scale.float() == 1.0)
    assert torch.all(dequantize_nvfp4(q) == 0)


def test_gaussian_relative_error_matches_modelopt(modelopt_nvfp4):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(256, 1024, generator=gen)
    q = quantize_nvfp4(w)
    rel = float((dequantize_nvfp4(q) - w).norm() / w.norm())
    qt, scale, global_scale = _modelopt(modelopt_nvfp4, w)
    deq = qt.dequantize(dtype=torch.float32, scale=scale, double_scale=global_scale, block_sizes={-1: 16})
    assert rel == float((deq - w).norm() / w.norm())
    assert 0.08 < rel < 0.11, rel  # 4-bit floats with E4M3 block scales: ~0.095 on Gaussians


@pytest.mark.parametrize(
    "dtype,rtol",
    # fp32: identical math up to summation order; bf16: the reference rounds W' to bf16 (incl. g)
    # while the fast path rounds only the output, so they differ by a few bf16 ulps
    [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)],
)
@pytest.mark.parametrize("rows_per_tile", [7, 64, 1024])
def test_tiled_linear_matches_naive_reference(dtype, rtol, rows_per_tile):
    gen = torch.Generator().manual_seed(rows_per_tile)
    w = torch.randn(96, 80, generator=gen) * 0.02
    bias = torch.randn(96, generator=gen).to(dtype)
    x = torch.randn(2, 3, 80, generator=gen).to(dtype)  # x: [B, T, in]
    q = quantize_nvfp4(w)
    fast = nvfp4_linear(x, q, bias, rows_per_tile=rows_per_tile)
    ref = nvfp4_linear_reference(x, q, bias)
    assert fast.shape == (2, 3, 96) and fast.dtype == dtype
    err = float((fast.float() - ref.float()).norm() / ref.float().norm())
    assert err < rtol, err


def test_nvfp4_linear_module_state_and_forward():
    gen = torch.Generator().manual_seed(9)
    lin = torch.nn.Linear(64, 48, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(48, 64, generator=gen))
    q = NVFP4Linear.from_linear(lin)
    sd = q.state_dict()
    assert sd["weight"].dtype == torch.uint8 and tuple(sd["weight"].shape) == (48, 32)
    assert sd["weight_scale"].dtype == torch.float8_e4m3fn and tuple(sd["weight_scale"].shape) == (48, 4)
    assert sd["weight_scale_2"].shape == () and sd["input_scale"].shape == ()
    x = torch.randn(5, 64, generator=gen)
    assert torch.allclose(q(x), q.forward_reference(x), rtol=1e-5, atol=1e-5)
    # and the quantized layer is close to the float one (4-bit error ~10%)
    with torch.no_grad():
        rel = float((q(x) - lin(x)).norm() / lin(x).norm())
    assert rel < 0.2, rel


def test_bad_inputs_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="multiple of 16"):
        quantize_nvfp4(torch.randn(4, 20))
    with pytest.raises(ValueError, match="float16/bfloat16/float32"):
        quantize_nvfp4(torch.ones(4, 16, dtype=torch.int32))
    with pytest.raises(ValueError, match="even last dimension"):
        pack_nibbles(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shapes disagree|covers"):
        NVFP4Tensor(torch.zeros(4, 8, dtype=torch.uint8), torch.ones(4, 2).to(torch.float8_e4m3fn), torch.ones(()))
    with pytest.raises(ValueError, match="uint8"):
        NVFP4Tensor(torch.zeros(4, 8), torch.ones(4, 1).to(torch.float8_e4m3fn), torch.ones(()))
    q = quantize_nvfp4(torch.randn(8, 32))
    with pytest.raises(ValueError, match="features"):
        nvfp4_linear(torch.randn(2, 16), q)


@pytest.mark.parametrize("native_on", [True, False], ids=["C", "PyTorch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_tile_dequantization_is_exact(dtype, native_on, monkeypatch):
    """Prefill tiles (C kernel, or the PyTorch fallback) == dequantize_nvfp4, bit for bit, over every byte and
    every positive finite scale (subnormals included)."""
    from qwen_stack.qwen_node.engine.nvfp4 import dequantize_rows

    monkeypatch.setenv("QWEN_STACK_NATIVE", "1" if native_on else "0")
    gen = torch.Generator().manual_seed(2)
    packed = torch.randint(0, 256, (126, 64), generator=gen, dtype=torch.uint8)  # every byte value appears
    scale_bytes = torch.arange(1, 127, dtype=torch.uint8)  # all positive finite E4M3, subnormals included
    block_scale = scale_bytes[torch.randperm(126, generator=gen)][:, None].repeat(1, 8).view(torch.float8_e4m3fn)
    for g in (torch.ones(()), torch.tensor(3.7e-3)):
        q = NVFP4Tensor(packed, block_scale, g)
        bits = torch.int32 if dtype == torch.float32 else torch.int16
        assert torch.equal(dequantize_rows(packed, block_scale, g, dtype).view(bits), dequantize_nvfp4(q, dtype).view(bits))
