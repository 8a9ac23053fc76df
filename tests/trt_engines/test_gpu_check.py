"""trt_engines/gpu_check.py: the whole TensorRT path on a GPU machine; without one, the refusal."""
from __future__ import annotations

import importlib

import pytest

from qwen_stack.trt_engines import gpu_check
from qwen_stack.trt_engines.build import TensorRTUnavailable, detect_gpu_arch, import_tensorrt


def _gpu_ready() -> str | None:
    """None when TensorRT, pycuda and a GPU are all here, else why not."""
    try:
        import_tensorrt()
        importlib.import_module("pycuda.driver")
        detect_gpu_arch()
    except (TensorRTUnavailable, ImportError) as exc:
        return str(exc)
    return None


REASON = _gpu_ready()


@pytest.mark.skipif(REASON is not None, reason=f"needs TensorRT, pycuda and an NVIDIA GPU: {REASON}")
def test_gpu_check_builds_engines_and_matches_the_engine(tmp_path):
    assert gpu_check.main(["--work", str(tmp_path), "--runs", "3"]) == 0


@pytest.mark.skipif(REASON is None, reason="TensorRT and a GPU are present: the refusal path does not apply")
def test_gpu_check_without_tensorrt_exits_3(capsys):
    assert gpu_check.main([]) == 3
    assert "TensorRT" in capsys.readouterr().err
