"""Where the project's files live, from a source checkout or an installed package."""
from __future__ import annotations

import os
from pathlib import Path

# Source checkout: this file is <root>/qwen_stack/paths.py.
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _share_dir() -> Path | None:
    """The installed share/qwen_stack folder, or None (a checkout without an install, a broken install)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("qwen_stack"))
    except Exception:
        return None


def config_dir() -> Path:
    """The `config/` folder: the checkout's, else the installed share/qwen_stack/config."""
    if (SOURCE_ROOT / "config").is_dir():
        return SOURCE_ROOT / "config"
    share = _share_dir()
    if share is None:  # pragma: no cover - only on broken installs
        raise FileNotFoundError("cannot find qwen_stack's config/ folder")
    return share / "config"


def config_file(name: str) -> Path:
    """A file in config/, or `name` itself when it is a path that exists."""
    if os.sep in name or Path(name).exists():
        return Path(name)
    return config_dir() / name


def project_path(name: str | os.PathLike) -> Path:
    """A path as given when it is absolute or exists from here; else the project's own file of that name
    (the checkout's, or the installed share/qwen_stack copy), so that a default such as
    `models/brain-nvfp4` works from any working directory. A path found nowhere is returned as given:
    its user names it in the error."""
    p = Path(name)
    if p.is_absolute() or p.exists():
        return p
    if (SOURCE_ROOT / p).exists():
        return SOURCE_ROOT / p
    share = _share_dir()
    return share / p if share is not None and (share / p).exists() else p


def interfaces_install_dir() -> Path:
    """colcon install space of ros_ws/ (holds qwen_stack_interfaces)."""
    return Path(os.environ.get("QWEN_STACK_ROS_WS_INSTALL", SOURCE_ROOT / "ros_ws" / "install"))
