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


def perceive(sim, perceiver, w: int = 320, h: int = 240):
    """The simulator's current frame through `perceiver` (its FrameResult)."""
    rgb, cam, pan, laser, odom = sensors(sim, w, h)
    return perceiver.process(rgb, sim.time, cam, pan, odom, laser)


def grasp(sim, perceiver, name: str) -> None:
    """`name` put on the pick site and held by the magnet, and perception told so (as the gripper's report)."""
    pick = sim.data.site_xpos[sim._pick_site]
    sim.move_object(name, float(pick[0]), float(pick[1]))
    sim.step_for(0.3)
    assert sim.attach(name) == (True, name)
    o = sim.odometry()
    perceiver.hold(Pose2D(o.x, o.y, o.yaw), name)
