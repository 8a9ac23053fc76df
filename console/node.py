"""console_node: the operator's web console as a node of the stack. Wiring only.

Parameters: config/console.yaml. Credentials: console/access.py. ROS: console/ros_bridge.py.
Web: console/app.py. Prints the URL to open and where the controller token is.
"""
from __future__ import annotations

import signal
import socket
import sys

import rclpy
import uvicorn
from rclpy.signals import SignalHandlerOptions

from qwen_stack.console.access import AccessConfigError, load_credentials
from qwen_stack.console.app import create_app
from qwen_stack.console.ros_bridge import RosConsoleBridge
from qwen_stack.console.config import ConsoleConfigError, ConsoleSettings
from qwen_stack.node_parameters import settings_from_node
from qwen_stack.robot import RobotConfigError, load_robot


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:  # name the port and the parameter: "Address already in use" alone says neither
        sock.close()
        raise OSError(f"cannot listen on {host} port {port}: {exc.strerror}; choose another with the console "
                      f"parameter 'port' (console.port:=PORT on the launch command line; 0: any free port)") from None
    return sock


def main(argv: list[str] | None = None) -> int:
    # uvicorn owns SIGINT/SIGTERM (graceful stop); rclpy is shut down after it returns.
    rclpy.init(args=sys.argv if argv is None else ["console_node", *argv],
               signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("console")
    log = node.get_logger()
    try:
        settings = settings_from_node(node, ConsoleSettings)
        settings.within_robot(load_robot(settings.robot_file))   # teleop clamps at most the robot's limits
        credentials, created = load_credentials(settings)
        sock = _bind(settings.host, settings.port)
    except (ConsoleConfigError, RobotConfigError, AccessConfigError, OSError) as exc:
        log.fatal(str(exc))
        node.destroy_node()
        rclpy.shutdown()
        return 2
    port = sock.getsockname()[1]
    bridge = RosConsoleBridge(node, settings)
    app = create_app(settings, credentials, bridge, port=port)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    log.info(f"console at http://{host}:{port}/ ; controller token "
             f"{'created in' if created else 'from'} {credentials.controller_source}"
             + ("" if credentials.viewer_source is None else f"; viewer token from {credentials.viewer_source}"))
    bridge.start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="off",
                                           ws_max_size=settings.max_body_bytes,   # a page's message is small
                                           timeout_graceful_shutdown=2))   # open pages must not hold a stop
    # uvicorn stops gracefully on SIGINT/SIGTERM and then re-raises the signal to the previous handler:
    # make that one a no-op so the bridge still hands control back (zero command, lock released) below.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        bridge.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
