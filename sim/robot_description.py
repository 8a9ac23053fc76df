"""The robot's URDF (`robot_description`), generated from the robot description (config/robot.yaml,
qwen_stack/robot.py RobotSpec): the same numbers the MuJoCo world (sim/world.py) and the Gazebo files
(sim/gazebo_world.py) are built from.

Kinematic tree (REP 103/105 names from the sim node's frame parameters):

    base_link ─ left_wheel_joint (continuous, y) ─ left_wheel
              ─ right_wheel_joint (continuous, y) ─ right_wheel
              ─ laser_joint (fixed) ─ laser
              ─ camera_pan_joint (revolute, z) ─ camera_pan_link ─ camera_joint (fixed, tilt) ─ camera_link
                                                   ─ camera_optical_joint (fixed) ─ camera_optical_frame

`joints()` is the one list both the URDF and the sim node's /tf and /tf_static are made from, so the
two cannot disagree. base_link is the wheel axle's midpoint, wheel_radius above the floor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from qwen_stack.robot import RobotSpec, load_robot

# camera_link -> camera_optical_frame: z forward, x right, y down (REP 103's optical convention).
OPTICAL_RPY = (-math.pi / 2, 0.0, -math.pi / 2)


@dataclass(frozen=True)
class Frames:
    odom: str = "odom"
    base: str = "base_link"
    laser: str = "laser"
    camera_pan: str = "camera_pan_link"
    camera: str = "camera_link"
    camera_optical: str = "camera_optical_frame"
    left_wheel: str = "left_wheel"
    right_wheel: str = "right_wheel"


@dataclass(frozen=True)
class Joint:
    name: str
    kind: str                                # fixed | revolute | continuous
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    limit: float | None = None               # revolute: +- radians


def joints(spec: RobotSpec, f: Frames = Frames()) -> list[Joint]:
    half = spec.wheel_separation / 2
    return [
        Joint("left_wheel_joint", "continuous", f.base, f.left_wheel, (0.0, half, 0.0), axis=(0.0, 1.0, 0.0)),
        Joint("right_wheel_joint", "continuous", f.base, f.right_wheel, (0.0, -half, 0.0), axis=(0.0, 1.0, 0.0)),
        Joint("laser_joint", "fixed", f.base, f.laser, tuple(spec.laser_xyz)),
        Joint(spec.camera_pan_joint, "revolute", f.base, f.camera_pan, tuple(spec.camera_xyz), limit=spec.pan_limit),
        Joint("camera_joint", "fixed", f.camera_pan, f.camera, (0.0, 0.0, 0.0),
              rpy=(0.0, math.radians(spec.camera_tilt_deg), 0.0)),
        Joint("camera_optical_joint", "fixed", f.camera, f.camera_optical, (spec.camera_lens_x, 0.0, 0.0),
              rpy=OPTICAL_RPY),
    ]


def quat_rpy(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of R = Rz(yaw) Ry(pitch) Rx(roll) (URDF's and ROS's fixed-axis rpy)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy)


def quat_mul(a, b) -> tuple[float, float, float, float]:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)


def quat_matrix(q) -> list[list[float]]:
    """3x3 rotation matrix (rows) of an (x, y, z, w) quaternion."""
    x, y, z, w = q
    return [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]


def joint_transform(j: Joint, position: float = 0.0) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """parent -> child transform (translation, quaternion x y z w) at a joint position (radians)."""
    q = quat_rpy(*j.rpy)
    if j.kind != "fixed":
        s = math.sin(position / 2)
        q = quat_mul(q, (j.axis[0] * s, j.axis[1] * s, j.axis[2] * s, math.cos(position / 2)))
    return j.xyz, q


def _v(values) -> str:
    return " ".join(f"{v:.9g}" for v in values)


def urdf(spec: RobotSpec | None = None, f: Frames = Frames(), name: str = "qwen_stack_robot") -> str:
    """URDF of the robot (None: config/robot.yaml): links with simple visuals, the joints of `joints()`."""
    spec = spec if spec is not None else load_robot()
    r, (cx, cy, cz) = spec.wheel_radius, spec.chassis_half_size
    visuals = {
        f.base: f'<visual><origin xyz="{_v((spec.chassis_offset_x, 0, cz + 0.005))}"/>'
                f'<geometry><box size="{_v((2 * cx, 2 * cy, 2 * cz))}"/></geometry></visual>',
        f.left_wheel: f'<visual><origin rpy="{_v((math.pi / 2, 0, 0))}"/><geometry><cylinder radius="{r:.6g}" '
                      f'length="{2 * spec.wheel_half_width:.6g}"/></geometry></visual>',
        f.laser: '<visual><origin xyz="0 0 -0.025"/><geometry><cylinder radius="0.03" length="0.04"/></geometry></visual>',
        f.camera: '<visual><geometry><box size="0.03 0.06 0.03"/></geometry></visual>',
    }
    visuals[f.right_wheel] = visuals[f.left_wheel]
    links = [f.base] + [j.child for j in joints(spec, f)]
    out = ['<?xml version="1.0"?>', f"<robot name={quoteattr(name)}>"]
    out += [f"  <link name={quoteattr(link)}>{visuals.get(link, '')}</link>" for link in links]
    for j in joints(spec, f):
        out.append(f"  <joint name={quoteattr(j.name)} type={quoteattr(j.kind)}>")
        out.append(f"    <parent link={quoteattr(j.parent)}/><child link={quoteattr(j.child)}/>")
        out.append(f'    <origin xyz="{_v(j.xyz)}" rpy="{_v(j.rpy)}"/>')
        if j.kind != "fixed":
            out.append(f'    <axis xyz="{_v(j.axis)}"/>')
        if j.limit is not None:
            out.append(f'    <limit lower="{-j.limit:.6g}" upper="{j.limit:.6g}" effort="1" velocity="3"/>')
        out.append("  </joint>")
    out.append("</robot>")
    return "\n".join(out) + "\n"
