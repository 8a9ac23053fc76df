"""mypy over the TensorRT/pycuda-facing modules, against tensorrt-stubs and our pycuda stub (no GPU needed).

tensorrt-stubs installs its .pyi files into site-packages/tensorrt without a py.typed marker, which mypy
then refuses to read; the test copies them into a temporary stub folder on MYPYPATH instead, next to
trt_engines/typing_stubs/pycuda. Five plugin-interface signatures in tensorrt-stubs 10.13 are not valid
Python (a parameter named `in`, a non-default after a default); the copy gives those `*args, **kwargs`. torch/onnx and the engine package are not followed (typed as Any), so
the check is about how we call TensorRT and pycuda.
"""
from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
CHECKED = ["trt_engines/build.py", "trt_engines/runtime.py", "trt_engines/gpu_check.py"]
MYPY_INI = """
[mypy]
python_version = 3.11
follow_imports = silent
warn_unused_ignores = True
check_untyped_defs = True

# the stubs are machine-generated and have their own errors (e.g. `bool` is also trt.bool): use, don't check
[mypy-tensorrt.*,tensorrt_bindings.*,tensorrt_libs.*]
ignore_errors = True
ignore_missing_imports = True

[mypy-torch.*,onnx.*,onnxruntime.*,transformers.*,safetensors.*,numpy.*,qwen_stack.*]
follow_imports = skip
ignore_missing_imports = True
"""


def _loosen_invalid_signatures(text: str) -> str:
    """Rewrite each `def` line Python cannot parse to take (self, *args, **kwargs), keeping its return type."""
    lines = text.split("\n")
    for _ in range(100):
        try:
            ast.parse("\n".join(lines))
            return "\n".join(lines)
        except SyntaxError as exc:
            i = (exc.lineno or 0) - 1
            m = re.match(r"^(\s*def \w+)\(.*\)(\s*->.*:)\s*$", lines[i])
            if m is None:
                raise
            lines[i] = f"{m.group(1)}(self, *args: typing.Any, **kwargs: typing.Any){m.group(2)}"
    raise AssertionError("too many invalid lines in tensorrt-stubs")


def _stub_dir(tmp_path: Path) -> Path:
    site = Path(importlib.util.find_spec("tensorrt_bindings").submodule_search_locations[0]).parent
    stubs = tmp_path / "stubs"
    for pkg in ("tensorrt", "tensorrt_bindings"):
        (stubs / pkg).mkdir(parents=True)
        for f in (site / pkg).glob("*.pyi"):
            (stubs / pkg / f.name).write_text(_loosen_invalid_signatures(f.read_text()))
    shutil.copytree(REPO / "trt_engines" / "typing_stubs" / "pycuda", stubs / "pycuda")
    return stubs


def _mypy(tmp_path: Path, files: list[str]) -> subprocess.CompletedProcess:
    ini = tmp_path / "mypy.ini"
    ini.write_text(MYPY_INI)
    env = {"MYPYPATH": str(_stub_dir(tmp_path)), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ini), "--cache-dir",
                           str(tmp_path / "cache"), *files], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_tensorrt_and_pycuda_calls_typecheck(tmp_path):
    if importlib.util.find_spec("tensorrt_bindings") is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    r = _mypy(tmp_path, CHECKED)
    assert r.returncode == 0, r.stdout + r.stderr


def test_typecheck_catches_api_misuse(tmp_path):
    """The check can fail: a wrong TensorRT call in a scratch module is reported."""
    if importlib.util.find_spec("tensorrt_bindings") is None:
        pytest.skip("tensorrt-stubs is not installed")
    bad = tmp_path / "bad_trt_use.py"
    bad.write_text("import tensorrt as trt\n\n\ndef f(config: trt.IBuilderConfig) -> None:\n"
                   "    config.set_flag(trt.BuilderFlag.FP5)\n    config.set_timing_cache(None)\n")
    r = _mypy(tmp_path, [str(bad)])
    assert r.returncode != 0
    assert "FP5" in r.stdout and "set_timing_cache" in r.stdout
