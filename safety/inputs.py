"""ROS-free input and output types of the safety core (plain dataclasses; the node converts messages).

Times are seconds on one clock chosen by the caller (the node uses its ROS clock at reception),
so that no sender's clock can make stale data look fresh.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class CommandSource(str, enum.Enum):
    """Motion sources the input mux knows, in priority order (teleop outranks autonomy)."""

    TELEOP = "teleop"
    AUTONOMY = "autonomy"


@dataclass(frozen=True)
class VelocityCommand:
    """A Twist as received: the base is planar (differential drive), so only linear_x and angular_z
    can be sent; the other components are carried so that non-finite or non-zero values are seen."""

    linear_x: float = 0.0
    angular_z: float = 0.0
    source: str = CommandSource.AUTONOMY.value
    stamp: float = 0.0            # reception time, s
    linear_y: float = 0.0
    linear_z: float = 0.0
    angular_x: float = 0.0
    angular_y: float = 0.0

    def components(self) -> tuple[float, float, float, float, float, float]:
        return (self.linear_x, self.linear_y, self.linear_z, self.angular_x, self.angular_y, self.angular_z)


@dataclass(frozen=True)
class OutputCommand:
    """What the supervisor actually sends to the base (planar)."""

    linear_x: float = 0.0
    angular_z: float = 0.0

    @property
    def is_zero(self) -> bool:
        return self.linear_x == 0.0 and self.angular_z == 0.0


ZERO = OutputCommand()


@dataclass(frozen=True)
class LaserScanData:
    """A LaserScan in the laser's frame. ranges: [N] metres, REP 117: NaN no measurement, +inf (or above
    range_max) no return, -inf (or below range_min) too close: an obstacle at the sensor (geometry.py)."""

    angle_min: float
    angle_increment: float
    range_min: float
    range_max: float
    ranges: np.ndarray            # [N] float
    stamp: float                  # reception time, s


@dataclass(frozen=True)
class OdometryData:
    """Base pose in the odom frame (the frame of the geofence and keep-out polygons) and its velocity."""

    x: float
    y: float
    theta: float
    linear_x: float
    angular_z: float
    stamp: float                  # reception time, s


@dataclass(frozen=True)
class TeleopLock:
    """State of the teleop lock topic: held=True blocks autonomy."""

    held: bool
    stamp: float


@dataclass(frozen=True)
class EStopEvent:
    """A request to latch the e-stop (from the service, the topic or the console)."""

    origin: str                   # "service", "topic", "console", "heartbeat", ...
    reason: str
    stamp: float
