"""How a node process runs and stops: one place for every rclpy node's main().

Why not rclpy's own signal handlers: on SIGINT they shut the ROS context down at once, from the
signal, while callbacks may still run. A node's last duty (a zero velocity command, closing a
recording) then meets an invalid context and raises ("publisher's context is invalid"), or is
skipped, depending on timing. Here a SIGINT/SIGTERM only sets `stop`; the executor is spun in short
slices until then, and the node's `on_stop` runs while the context is still valid, before the
executor, the node and the context are shut down in that order. A second signal raises
KeyboardInterrupt in the main thread (a stop that hangs can still be interrupted).
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable, TypeVar

SPIN_SLICE_S = 0.1   # how long a stop request can wait for the executor to look at it

N = TypeVar("N")


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set `stop`; the second one raises KeyboardInterrupt."""
    def on_signal(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def spin_until(executor, stop: threading.Event) -> None:
    """Spin `executor` until `stop` is set or the ROS context is shut down."""
    import rclpy

    while not stop.is_set() and rclpy.ok():
        executor.spin_once(timeout_sec=SPIN_SLICE_S)


def shutdown_executor(executor, timeout_sec: float = 2.0) -> None:
    """Shut an executor down once the callbacks in flight on a MultiThreadedExecutor's pool have ended: rclpy's
    shutdown destroys the guard condition they signal when done, and each would end in "exception was never
    retrieved"."""
    pool = getattr(executor, "_executor", None)
    if pool is not None:
        pool.shutdown(wait=True)
    executor.shutdown(timeout_sec=timeout_sec)


def run_node(name: str, make_node: Callable[[], N], *, argv: list[str] | None = None,
             config_errors: tuple[type[BaseException], ...] = (), threads: int = 1,
             start: Callable[[N, threading.Event], int | None] | None = None,
             on_stop: Callable[[N], None] | None = None) -> int:
    """Init rclpy, build the node, spin it until SIGINT/SIGTERM, stop it cleanly; the exit code.

    make_node() raising one of `config_errors` prints "<name>: <error>" and returns 2.
    start(node, stop), when given, runs before spinning (a lifecycle configure, a second executor);
    a non-None return ends the process with that code before spinning.
    on_stop(node) runs after spinning with the context still valid (a last zero command is sent).
    """
    import rclpy
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()
    rclpy.init(args=sys.argv if argv is None else argv, signal_handler_options=SignalHandlerOptions.NO)
    install_stop_handlers(stop)
    try:
        try:
            node = make_node()
        except config_errors as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        executor = SingleThreadedExecutor() if threads == 1 else MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        try:
            if start is not None:
                code = start(node, stop)
                if code is not None:
                    return code
            spin_until(executor, stop)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()                 # threads of the node that watch `stop` end now
            if on_stop is not None:
                on_stop(node)
            shutdown_executor(executor)
            node.destroy_node()
        return 0
    finally:
        rclpy.try_shutdown()
