"""Shared fixtures for the NVFP4 tests: ModelOpt's quantizer as the bit-exact reference."""
from __future__ import annotations

import warnings

import pytest


@pytest.fixture(scope="session")
def modelopt_nvfp4():
    """ModelOpt's NVFP4QTensor, usable on a CPU-only torch.

    ModelOpt 0.42 asks torch.cuda for the device capability before its pure-torch path, which
    raises without CUDA; we replace that probe with one answering "no FP4 hardware" (a test double
    for the probe only, the quantization code itself is ModelOpt's).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import modelopt.torch.quantization.qtensor.nvfp4_tensor as nvfp4_tensor
    nvfp4_tensor.fp4_compatible = lambda: False
    return nvfp4_tensor.NVFP4QTensor
