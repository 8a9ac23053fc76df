"""Start console_node as a subprocess (as the launcher does) and find the URL it prints."""
from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from qwen_stack.paths import config_file

URL_RE = re.compile(r"console at (http://\S+?)/ ")


@contextlib.contextmanager
def console_node(env: dict, tmp_path: Path, token: str, **params):
    """Yields (base_url, log_lines, process). `params` override config/console.yaml (port defaults to 0: any free one)."""
    overrides = {"port": 0, "token_file": str(tmp_path / "token"), **params}
    pfile = tmp_path / "console_test_params.yaml"
    lines = "\n".join(f"    {k}: {v!r}" if isinstance(v, str) else f"    {k}: {v}" for k, v in overrides.items())
    pfile.write_text(f"/**:\n  ros__parameters:\n{lines}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwen_stack.console.node", "--ros-args",
         "--params-file", str(config_file("console.yaml")), "--params-file", str(pfile)],
        env={**env, "QWEN_STACK_CONSOLE_TOKEN": token}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def drain() -> None:
        for line in proc.stdout:
            log.append(line.rstrip())
            m = URL_RE.search(line)
            if m and not url:
                url.append(m.group(1))
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        while not found.is_set():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("console_node did not start:\n" + "\n".join(log))
            time.sleep(0.05)
        yield url[0], log, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
