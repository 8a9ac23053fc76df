"""A port someone else holds: every program of the stack that listens says which port and which
parameter or option moves it, and does not go on. (The console inside the stack: test_launcher.py.)"""
from __future__ import annotations

import socket
import subprocess
import sys


def test_serve_names_the_port_and_the_option_before_loading_a_model(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        # an empty folder: the port is checked before any checkpoint is read
        out = subprocess.run([sys.executable, "-m", "qwen_stack.cli", "serve", "--model", str(tmp_path),
                              "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"qwen-stack serve: cannot listen on 127.0.0.1 port {port}: Address already in use; "
                                  "choose another with --port PORT")
