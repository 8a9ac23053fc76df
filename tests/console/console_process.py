"""Start console_node as a subprocess (as the launcher does) and find the URL it prints."""
from __future__ import annotations

import contextlib
import re
import threading
import time
from pathlib import Path

from qwen_stack.paths import config_file
from tests.ros_processes import params_file, ros_args, start_node, stop

URL_RE = re.compile(r"console at (http://\S+?)/ ")


@contextlib.contextmanager
def console_node(env: dict, tmp_path: Path, token: str, **params):
    """Yields (base_url, log_lines, process). `params` override config/console.yaml (port defaults to 0: any free one)."""
    overrides = {"port": 0, "token_file": str(tmp_path / "token"), **params}
    pfile = params_file(tmp_path, "console_test_params", overrides)
    proc = start_node("qwen_stack.console.node", ros_args([config_file("console.yaml"), pfile]),
                      {**env, "QWEN_STACK_CONSOLE_TOKEN": token})
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
        stop(proc)
