"""The process environment every node of the stack runs in.

One place decides it, so that the launcher, the tests and the README agree:
- Fast DDS with our profile (config/fastdds.xml): the default 512 KB shared-memory
  segment is smaller than one 640x480 rgb8 frame and drops ~97% of best-effort frames;
- discovery limited to this host (cross-process discovery needs it on these machines);
- the interface package built in ros_ws/ on the import and library paths;
- AMENT_PREFIX_PATH including the virtual environment, for ament_index_python.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from qwen_stack.paths import config_file, interfaces_install_dir


def _prepend(env: dict, key: str, paths: list[str]) -> None:
    old = [p for p in env.get(key, "").split(os.pathsep) if p]
    new = [p for p in paths if p not in old]
    env[key] = os.pathsep.join(new + old)


def ros_environment(base: dict | None = None, domain_id: int | None = None) -> dict:
    """Return a copy of `base` (default: os.environ) with the stack's ROS settings applied."""
    env = dict(os.environ if base is None else base)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = str(config_file("fastdds.xml").resolve())
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", profile)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("MUJOCO_GL", "egl")  # the simulator renders headless (no display on robots' PCs or CI)

    prefixes = [sys.prefix]
    install = interfaces_install_dir()
    if install.is_dir():
        # colcon's isolated layout: <install>/<package>/{lib, lib/pythonX.Y/site-packages, share}.
        for pkg in sorted(p for p in install.iterdir() if p.is_dir()):
            prefixes.append(str(pkg))
            _prepend(env, "LD_LIBRARY_PATH", [str(pkg / "lib")])
            site = pkg / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
            # ros_ws/ also builds this package (a copy install: see scripts/build_ros_ws.sh); that
            # copy must not shadow the qwen_stack this interpreter runs (the editable checkout).
            if site.is_dir() and pkg.name != "qwen_stack":
                _prepend(env, "PYTHONPATH", [str(site)])
    _prepend(env, "AMENT_PREFIX_PATH", prefixes)
    return env


def apply_to_current_process() -> None:
    """Make the current Python see the interface package (import path only).

    Shared libraries of the generated typesupport are found by rclpy through
    LD_LIBRARY_PATH, which must be set before the process starts: entry points
    get it from the launcher or the tests; see `ros_environment`.
    """
    env = ros_environment()
    for key in ("RMW_IMPLEMENTATION", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE", "AMENT_PREFIX_PATH",
                "MUJOCO_GL"):
        os.environ[key] = env[key]
    for p in reversed(env.get("PYTHONPATH", "").split(os.pathsep)):
        if p and p not in sys.path and Path(p).is_dir():
            sys.path.insert(0, p)


def needs_reexec() -> bool:
    """True when the interface package's libraries are missing from LD_LIBRARY_PATH (which the dynamic
    loader reads only at start-up) and this process was not already re-executed for them."""
    if os.environ.get("_QWEN_STACK_REEXEC"):
        return False
    have = os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    install = interfaces_install_dir()
    needed = [str(p / "lib") for p in install.glob("*") if (p / "lib").is_dir()] if install.is_dir() else []
    return bool(needed) and not all(p in have for p in needed)


def reexec_with_ros_environment() -> None:
    """Re-execute this process once with `ros_environment()` when the interface package's libraries
    are not on LD_LIBRARY_PATH (the dynamic loader reads it only at start-up), as the ROS wheels'
    bootstrapper does for its own libraries. Used by command-line entry points started by hand."""
    if needs_reexec():
        env = ros_environment()
        env["_QWEN_STACK_REEXEC"] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, env)


def main(argv: list[str] | None = None) -> int:
    """`python -m qwen_stack.rosenv CMD ARGS...`: run CMD in the stack's ROS environment."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        for key, value in sorted(ros_environment().items()):
            if key in ("RMW_IMPLEMENTATION", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE",
                       "AMENT_PREFIX_PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "ROS_DOMAIN_ID"):
                print(f"export {key}={value!r}")
        return 0
    os.execvpe(argv[0], argv, ros_environment())
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
