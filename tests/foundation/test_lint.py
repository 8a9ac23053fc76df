"""pyflakes over every Python folder of the project: no unused import or variable, no redefined or
undefined name. A redefinition is not cosmetic: a second `trigger_failed` in the supervisor's node
once silently replaced the e-stop trigger's failure answer with the cancel service's one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

FOLDERS = ["qwen_stack", "qwen_node", "safety", "sim", "perception", "recorder", "console", "trt_engines",
           "bench", "scripts", "tests", "launch", "models"]


def test_pyflakes_finds_nothing():
    present = [f for f in FOLDERS if (REPO_ROOT / f).exists()]
    run = subprocess.run([sys.executable, "-m", "pyflakes", *present], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout + run.stderr
