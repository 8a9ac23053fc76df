"""`qwen-stack launch`: start the stack from config/stack.yaml without launch/launch_ros (pip world).

Each node runs as its own process with `--ros-args --params-file` in the stack's ROS
environment (qwen_stack.rosenv). Output lines are prefixed with the node name; a status
line per node is printed on every change and every `--status-period` seconds; Ctrl-C is
forwarded to every node; a required node that dies stops the stack with a non-zero exit
naming it.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from qwen_stack.rosenv import ros_environment
from qwen_stack.stack_config import CommandLineValue, NodeSpec, StackConfigError, load_stack

SHUTDOWN_GRACE_S = 5.0


def entry_point_target(executable: str, package: str = "qwen_stack") -> str:
    """'module:function' of a console script of `package`."""
    for ep in importlib.metadata.entry_points(group="console_scripts", name=executable):
        if ep.dist is None or ep.dist.name.replace("-", "_") == package:
            return ep.value
    raise StackConfigError(f"executable {executable!r} is not a console script of package {package!r}")


def node_command(spec: NodeSpec, params_file: Path, python: str = sys.executable) -> list[str]:
    """The command line that starts `spec` as its own process."""
    module, func = entry_point_target(spec.executable, spec.package).split(":")
    cmd = [python, "-c", f"import sys; from {module} import {func}; sys.exit({func}())",
           "--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace.strip("/"):
        cmd += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    cmd += ["--params-file", str(params_file)]
    for src, dst in spec.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def write_params_file(spec: NodeSpec, folder: Path) -> Path:
    path = folder / f"{spec.name}.params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": spec.parameters()}}, sort_keys=True))
    return path


@dataclass
class RunningNode:
    spec: NodeSpec
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    last_line: str = ""

    def state(self) -> str:
        rc = self.proc.poll()
        if rc is None:
            return f"running pid {self.proc.pid} up {time.monotonic() - self.started:5.0f}s"
        return f"exited with code {rc}"


class Launcher:
    def __init__(self, specs: list[NodeSpec], env: dict, status_period: float, out=sys.stdout) -> None:
        self.specs, self.env, self.status_period, self.out = specs, env, status_period, out
        self.nodes: list[RunningNode] = []
        self.lock = threading.Lock()
        # Set from signal handlers: a plain attribute, since locks (Event, print under a lock) taken in
        # a handler deadlock when the signal lands while the main thread holds the same lock.
        self.stop_reason: str | None = None
        self.tmp = tempfile.TemporaryDirectory(prefix="qwen_stack_launch_")

    def _print(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out, flush=True)

    def _pump(self, node: RunningNode) -> None:
        assert node.proc.stdout is not None
        for line in node.proc.stdout:
            line = line.rstrip("\n")
            node.last_line = line
            self._print(f"[{node.spec.name}] {line}")

    def status(self) -> None:
        self._print("---- status " + time.strftime("%H:%M:%S"))
        width = max((len(n.spec.name) for n in self.nodes), default=0)
        for node in self.nodes:
            self._print(f"  {node.spec.name:<{width}}  {node.state()}")

    def start(self) -> None:
        for spec in self.specs:
            cmd = node_command(spec, write_params_file(spec, Path(self.tmp.name)))
            proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, bufsize=1, start_new_session=True)
            node = RunningNode(spec, proc)
            self.nodes.append(node)
            threading.Thread(target=self._pump, args=(node,), daemon=True).start()
            self._print(f"[launch] started {spec.fully_qualified_name} ({spec.executable}) pid {proc.pid}")

    def watch(self) -> int:
        """Wait until Ctrl-C or a required node dies; returns the exit code of the stack."""
        last_status, reported = 0.0, set()
        while self.stop_reason is None:
            for node in self.nodes:
                rc = node.proc.poll()
                if rc is not None and node.spec.name not in reported:
                    reported.add(node.spec.name)
                    if node.spec.required:
                        self._print(f"[launch] required node '{node.spec.name}' died (exit code {rc}); stopping the stack")
                        self.status()
                        return 1
                    self._print(f"[launch] node '{node.spec.name}' exited with code {rc} (not required; continuing)")
                    self.status()
            if self.nodes and all(n.proc.poll() is not None for n in self.nodes):
                return 0
            if time.monotonic() - last_status >= self.status_period:
                last_status = time.monotonic()
                self.status()
            time.sleep(0.2)
        self._print(f"[launch] {self.stop_reason}: stopping the stack")
        return 0

    def shutdown(self) -> None:
        alive = [n for n in self.nodes if n.proc.poll() is None]
        for n in alive:
            n.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for n in alive:
            try:
                n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._print(f"[launch] {n.spec.name} ignored SIGINT; killing")
                os.killpg(n.proc.pid, signal.SIGKILL)
                n.proc.wait()
        self.tmp.cleanup()


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """`node.param:=value` -> {node: {param: value}}; load_stack reads each value by the parameter's
    declared type (text for a string parameter, YAML for a list)."""
    out: dict[str, dict] = {}
    for item in items:
        if ":=" not in item or "." not in item.split(":=", 1)[0]:
            raise StackConfigError(f"override {item!r} must look like node.parameter:=value")
        key, value = item.split(":=", 1)
        node, param = key.split(".", 1)
        out.setdefault(node, {})[param] = CommandLineValue(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qwen-stack launch", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default="stack.yaml", help="stack file (config/stack.yaml by default)")
    parser.add_argument("--profile", default=None, help="node set from the stack file's profiles (default: all nodes)")
    parser.add_argument("--namespace", default=None, help="robot namespace (overrides the stack file)")
    parser.add_argument("--status-period", type=float, default=10.0, help="seconds between status lines")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run until Ctrl-C)")
    parser.add_argument("--check", action="store_true",
                        help="check the stack file and the overrides, print each node's command line, start nothing")
    parser.add_argument("overrides", nargs="*", help="node.parameter:=value")
    args = parser.parse_args(argv)
    try:
        stack = load_stack(args.stack, namespace=args.namespace, overrides=parse_overrides(args.overrides))
        specs = stack.select(args.profile)
        for spec in specs:
            entry_point_target(spec.executable, spec.package)
    except StackConfigError as exc:
        print(f"qwen-stack launch: {exc}", file=sys.stderr)
        return 2
    if args.check:
        with tempfile.TemporaryDirectory(prefix="qwen_stack_check_") as tmp:
            for spec in specs:
                print(f"{spec.fully_qualified_name}: {' '.join(node_command(spec, write_params_file(spec, Path(tmp))))}")
        print(f"qwen-stack launch: {len(specs)} nodes, parameters checked; nothing started (--check)")
        return 0
    launcher = Launcher(specs, ros_environment(), args.status_period)

    def on_signal(signum, _frame):
        launcher.stop_reason = signal.Signals(signum).name

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if args.duration > 0:
        timer = threading.Timer(args.duration, lambda: setattr(launcher, "stop_reason", f"--duration {args.duration:g} s"))
        timer.daemon = True
        timer.start()
    launcher.start()
    try:
        code = launcher.watch()
    finally:
        launcher.shutdown()
    launcher._print(f"[launch] stack stopped (exit code {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
