"""What perception_node would receive from the simulator, read directly (no ROS): shared by
bench/perception.py and the perception tests that run on MuJoCo frames."""
from __future__ import annotations

from qwen_stack.geometry import CameraIntrinsics, Pose2D
from qwen_stack.perception.camera_geometry import LaserScan2D


def sensors(sim, w: int, h: int):
    """(rgb, intrinsics, pan, laser scan, odometry pose) of the simulator's current state."""
    rgb = sim.render_camera(w, h)
    cam = CameraIntrinsics(*sim.camera_intrinsics(w, h), w, h)
    names, pos, _ = sim.joint_states()
    pan = pos[names.index("camera_pan_joint")]
    lz = sim.laser
    laser = LaserScan2D(sim.robot.laser_xyz[:2], lz.angle_min, lz.angle_increment, sim.laser_scan(), lz.range_min,
                        lz.range_max, sim.time)
    o = sim.odometry()
    return rgb, cam, pan, laser, Pose2D(o.x, o.y, o.yaw)
