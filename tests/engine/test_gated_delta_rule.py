"""Chunked (prefill) and step (decode) gated delta rule against the per-timestep fp32 reference.

Inputs are seeded random: q, k L2-normalised as the layer does, g = log decay in [-2, 0), beta in (0, 1).
Tolerance: max abs error / max abs reference <= 2e-5 for outputs and final states (fp32)."""
from __future__ import annotations

import pytest
import torch

from qwen_stack.qwen_node.engine.gated_delta_rule import (gated_delta_rule_chunked, gated_delta_rule_reference,
                                                           gated_delta_rule_step)

TOL = 2e-5


def make_inputs(B, H, T, K, V, seed, with_state):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(B, H, T, K, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(B, H, T, K, generator=g), dim=-1)
    v = torch.randn(B, H, T, V, generator=g)
    decay = -2 * torch.rand(B, H, T, generator=g)
    beta = torch.rand(B, H, T, generator=g)
    s0 = torch.randn(B, H, K, V, generator=g) if with_state else None
    return q, k, v, decay, beta, s0


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


SHAPES = [(1, 1, 1, 4, 4), (2, 3, 5, 8, 16), (1, 2, 64, 16, 8), (2, 2, 100, 32, 32), (1, 4, 130, 8, 24)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("chunk", [16, 64])
def test_chunked_matches_reference(shape, with_state, chunk):
    q, k, v, g, beta, s0 = make_inputs(*shape, seed=sum(shape) + chunk, with_state=with_state)
    scale = shape[3] ** -0.5
    o_ref, s_ref = gated_delta_rule_reference(q, k, v, g, beta, scale, s0)
    o, s = gated_delta_rule_chunked(q, k, v, g, beta, scale, s0, chunk_size=chunk)
    assert o.shape == o_ref.shape and s.shape == s_ref.shape
    assert rel(o, o_ref) <= TOL
    assert rel(s, s_ref) <= TOL


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_steps_match_reference(shape, with_state):
    B, H, T, K, V = shape
    q, k, v, g, beta, s0 = make_inputs(*shape, seed=7 * sum(shape), with_state=with_state)
    scale = K ** -0.5
    o_ref, s_ref = gated_delta_rule_reference(q, k, v, g, beta, scale, s0)
    state = torch.zeros(B, H, K, V) if s0 is None else s0.clone()
    outs = [gated_delta_rule_step(q[:, :, t], k[:, :, t], v[:, :, t], g[:, :, t], beta[:, :, t], scale, state)
            for t in range(T)]
    assert rel(torch.stack(outs, dim=2), o_ref) <= TOL
    assert rel(state, s_ref) <= TOL


def test_reference_is_the_recurrence_by_hand():
    """One head, K = V = 1: S1 = e^g0 * 0 + k0*beta0*(v0 - 0); o = S * scale * q, written out by hand."""
    q = torch.tensor([1.0, 1.0]).view(1, 1, 2, 1)
    k = torch.tensor([1.0, 1.0]).view(1, 1, 2, 1)
    v = torch.tensor([2.0, 4.0]).view(1, 1, 2, 1)
    g = torch.log(torch.tensor([0.5, 0.5])).view(1, 1, 2)
    beta = torch.tensor([0.5, 0.25]).view(1, 1, 2)
    o, s = gated_delta_rule_reference(q, k, v, g, beta, 1.0)
    # t0: S = 0.5*0 = 0; delta = (2 - 0) * 0.5 = 1; S = 1; o0 = 1
    # t1: S = 0.5*1 = 0.5; delta = (4 - 0.5) * 0.25 = 0.875; S = 1.375; o1 = 1.375
    assert torch.allclose(o.flatten(), torch.tensor([1.0, 1.375]))
    assert torch.allclose(s.flatten(), torch.tensor([1.375]))
