"""ROS messages -> the supervisor core's dataclasses (the core never sees a ROS type). Request and response
conversion for the tool proxy is qwen_stack.ros_messages, shared with the planner."""
from __future__ import annotations

import numpy as np

from qwen_stack.geometry import yaw_of
from qwen_stack.ros_messages import InterfaceUnavailable, service_class
from qwen_stack.safety.inputs import LaserScanData, OdometryData, VelocityCommand


def twist_to_command(msg, source: str, stamp: float) -> VelocityCommand:
    return VelocityCommand(msg.linear.x, msg.angular.z, source, stamp, msg.linear.y, msg.linear.z,
                           msg.angular.x, msg.angular.y)


def scan_to_data(msg, stamp: float) -> LaserScanData:
    return LaserScanData(msg.angle_min, msg.angle_increment, msg.range_min, msg.range_max,
                         np.asarray(msg.ranges, dtype=np.float64), stamp)


def odom_to_data(msg, stamp: float) -> OdometryData:
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    yaw = yaw_of(q)
    t = msg.twist.twist
    return OdometryData(p.x, p.y, yaw, t.linear.x, t.angular.z, stamp)


def request_fields(type_name: str) -> list[str] | None:
    """The request's field names of a 'pkg/srv/Name', or None when it cannot be imported (the policy loader
    refuses such a service with its own message)."""
    try:
        return list(service_class(type_name).Request.get_fields_and_field_types())
    except InterfaceUnavailable:
        return None
