"""MJCF generation: the differential-drive robot and the walled arena of a WorldLayout.

Frames (REP 103: x forward, y left, z up). The robot body `base_link` sits on the wheel axle
midpoint; the wheels are hinges about base y; a frictionless caster sphere carries the back.
`camera_link` turns on the `camera_pan_joint` hinge (about z) and is pitched down by
camera_tilt_deg; the MuJoCo camera looks along camera_link's +x (MuJoCo cameras look along their
-z, hence the `xyaxes`). `laser` is a site at
the scanner's origin. `pick` is the magnetic gripper's site at the front bumper.

The wheels touch the floor with an invisible sphere of the wheel's radius: a single contact point
exactly under the axle, so the rolling radius and the track are those of the robot description
(config/robot.yaml, qwen_stack/robot.py RobotSpec; a cylinder
touches with its rim edges and turns ~9% slower than its encoders say). The visible cylinder does
not collide. Tyres and casters have stiff contacts (solref 0.004 s): with MuJoCo's default
(0.02 s) they sink ~1 mm and the rolling radius, hence odometry, is off by ~2%. The front caster
floats a few mm above the floor (a pitch stop), so the wheels carry the weight with the rear one.

Geom groups: 0 = world (walls, objects: seen by the laser), 1 = robot (not seen by its own
laser), 2 = floor paint (target areas: seen by the camera only).
"""
from __future__ import annotations

import math
from xml.sax.saxutils import quoteattr

from qwen_stack.robot import RobotConfigError, RobotSpec, load_robot
from qwen_stack.sim.scenario import WorldLayout

GROUP_WORLD, GROUP_ROBOT, GROUP_FLOOR_PAINT = 0, 1, 2


def joint_names(spec: RobotSpec) -> tuple[str, str, str]:
    """The simulated robot's moving joints, as joint_states names them (the pan joint's from robot.yaml)."""
    return ("left_wheel_joint", "right_wheel_joint", spec.camera_pan_joint)


def check_simulated(spec: RobotSpec) -> None:
    """The simulated robot always has a pan joint: a description that cannot be simulated is refused by name."""
    if not spec.camera_pan_joint:
        raise RobotConfigError("camera_pan_joint: the simulated robot's camera pans; name its joint "
                               "(\"\" is only for a real robot with a fixed camera)")
    if spec.pan_limit <= 0:
        raise RobotConfigError(f"pan_limit: the simulated robot's camera pans; must be > 0, got {spec.pan_limit}")


def _f(*values: float) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def _robot_xml(spec: RobotSpec, x: float, y: float, yaw: float) -> str:
    check_simulated(spec)
    r, sep = spec.wheel_radius, spec.wheel_separation
    cx, cy, cz = spec.chassis_half_size
    caster_z = -(r - spec.caster_radius)
    q = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
    robot = f"group='{GROUP_ROBOT}'"
    return f"""
    <body name="base_link" pos="{_f(x, y, r)}" quat="{_f(*q)}">
      <freejoint name="base_free"/>
      <inertial pos="{_f(spec.chassis_offset_x, 0, -0.01)}" mass="{spec.base_mass}"
                diaginertia="{_f(0.03, 0.04, 0.06)}"/>
      <geom name="chassis" type="box" size="{_f(cx, cy, cz)}" pos="{_f(spec.chassis_offset_x, 0, cz + 0.005)}"
            rgba="0.85 0.85 0.88 1" {robot} mass="0"/>
      <geom name="caster" type="sphere" size="{spec.caster_radius}" pos="{_f(spec.caster_x, 0, caster_z)}"
            condim="1" priority="1" solref="0.004 1" solimp="0.99 0.999 0.0005" rgba="0.2 0.2 0.2 1" {robot} mass="0"/>
      <geom name="front_caster" type="sphere" size="{spec.caster_radius}" pos="{_f(spec.front_caster_x, 0, caster_z + spec.front_caster_gap)}"
            condim="1" priority="1" solref="0.004 1" solimp="0.99 0.999 0.0005" rgba="0.2 0.2 0.2 1" {robot} mass="0"/>
      <geom name="bumper" type="box" size="{_f(0.01, cy, 0.02)}" pos="{_f(spec.chassis_offset_x + cx + 0.01, 0, 0.03)}"
            rgba="0.2 0.2 0.2 1" {robot} mass="0" contype="0" conaffinity="0"/>
      <site name="laser" pos="{_f(*spec.laser_xyz)}" size="0.01"/>
      <geom name="laser_head" type="cylinder" size="0.03 0.02" pos="{_f(*spec.laser_xyz[:2], spec.laser_xyz[2] - 0.025)}"
            rgba="0.1 0.1 0.1 1" {robot} mass="0" contype="0" conaffinity="0"/>
      <site name="pick" pos="{_f(spec.pick_x, 0, 0)}" size="0.015" rgba="0.9 0.6 0.1 0.6"/>
      <body name="left_wheel" pos="{_f(0, sep / 2, 0)}">
        <joint name="left_wheel_joint" type="hinge" axis="0 1 0" damping="0.01"/>
        <geom name="left_wheel_tyre" type="sphere" size="{r}" mass="{spec.wheel_mass}"
              friction="1.2 0.01 0.001" rgba="0.1 0.1 0.1 0" solref="0.004 1" solimp="0.99 0.999 0.0005" {robot}/>
        <geom name="left_wheel" type="cylinder" size="{_f(r, spec.wheel_half_width)}" zaxis="0 1 0"
              mass="0" rgba="0.1 0.1 0.1 1" contype="0" conaffinity="0" {robot}/>
      </body>
      <body name="right_wheel" pos="{_f(0, -sep / 2, 0)}">
        <joint name="right_wheel_joint" type="hinge" axis="0 1 0" damping="0.01"/>
        <geom name="right_wheel_tyre" type="sphere" size="{r}" mass="{spec.wheel_mass}"
              friction="1.2 0.01 0.001" rgba="0.1 0.1 0.1 0" solref="0.004 1" solimp="0.99 0.999 0.0005" {robot}/>
        <geom name="right_wheel" type="cylinder" size="{_f(r, spec.wheel_half_width)}" zaxis="0 1 0"
              mass="0" rgba="0.1 0.1 0.1 1" contype="0" conaffinity="0" {robot}/>
      </body>
      <body name="camera_pan_link" pos="{_f(*spec.camera_xyz)}">
        <joint name={quoteattr(spec.camera_pan_joint)} type="hinge" axis="0 0 1" range="{_f(-spec.pan_limit, spec.pan_limit)}"
               damping="0.05" armature="0.001"/>
        <geom name="camera_mast" type="cylinder" size="0.012 0.03" pos="0 0 -0.03" mass="0.05"
              rgba="0.3 0.3 0.3 1" {robot} contype="0" conaffinity="0"/>
        <body name="camera_link" pos="0 0 0" euler="{_f(0, math.radians(spec.camera_tilt_deg), 0)}">
          <geom name="camera_housing" type="box" size="0.015 0.03 0.015" mass="0.05" rgba="0.1 0.1 0.1 1"
                {robot} contype="0" conaffinity="0"/>
          <camera name="camera" pos="{_f(spec.camera_lens_x, 0, 0)}" xyaxes="0 -1 0 0 0 1" fovy="{spec.camera_fovy_deg}"/>
        </body>
      </body>
    </body>"""


def _object_xml(o) -> str:
    size = _f(*o.size)
    # A ball gets rolling resistance (friction's third number, which MuJoCo applies only with condim 6): with
    # the default condim 3 a ball the robot brushed rolled on at constant speed across the whole arena. 0.003 m:
    # a rubber ball on carpet, nudged at 0.3 m/s it stops within ~0.1 m
    contact = 'friction="0.8 0.01 0.003" condim="6"' if o.shape == "sphere" else 'friction="0.8 0.01 0.001"'
    z = o.half_height + 0.002
    q = (math.cos(o.pose.yaw / 2), 0.0, 0.0, math.sin(o.pose.yaw / 2))
    return f"""
    <body name={quoteattr(o.name)} pos="{_f(o.pose.x, o.pose.y, z)}" quat="{_f(*q)}">
      <freejoint name={quoteattr(o.name + '_free')}/>
      <geom name={quoteattr(o.name)} type="{o.shape}" size="{size}" rgba="{_f(*o.rgba)}" mass="{o.mass}"
            group="{GROUP_WORLD}" {contact}/>
    </body>"""


def build_mjcf(layout: WorldLayout, robot: RobotSpec | None = None, offscreen: tuple[int, int] = (640, 480),
               timestep: float = 0.002, fast_render: bool = True) -> str:
    """The whole world as an MJCF string. `offscreen`: largest (width, height) the camera may render.
    robot: None is config/robot.yaml.

    fast_render: no shadows, no multisampling (CPU rendering is ~30x faster); False keeps MuJoCo's
    defaults (shadow map, 4x MSAA, the sun casting shadows), the baseline of bench/sim_rate.py.
    """
    robot = robot if robot is not None else load_robot()
    quality = '<quality shadowsize="0" offsamples="0"/>' if fast_render else ""
    shadows = "false" if fast_render else "true"
    hx, hy = layout.arena_half_size
    t, h = layout.wall_thickness, layout.wall_height
    lt = layout.lighting
    walls = []
    for name, pos, size in (
        ("wall_north", (0, hy + t / 2, h / 2), (hx + t, t / 2, h / 2)),
        ("wall_south", (0, -hy - t / 2, h / 2), (hx + t, t / 2, h / 2)),
        ("wall_east", (hx + t / 2, 0, h / 2), (t / 2, hy, h / 2)),
        ("wall_west", (-hx - t / 2, 0, h / 2), (t / 2, hy, h / 2)),
    ):
        walls.append(f'    <geom name="{name}" type="box" pos="{_f(*pos)}" size="{_f(*size)}" '
                     f'rgba="0.75 0.72 0.65 1" group="{GROUP_WORLD}"/>')
    areas = []
    for a in layout.areas:
        q = (math.cos(a.pose.yaw / 2), 0.0, 0.0, math.sin(a.pose.yaw / 2))
        areas.append(f'    <geom name={quoteattr(a.name)} type="box" pos="{_f(a.pose.x, a.pose.y, 0.0005)}" '
                     f'quat="{_f(*q)}" size="{_f(*a.half_size, 0.0005)}" rgba="{_f(*a.rgba)}" '
                     f'contype="0" conaffinity="0" group="{GROUP_FLOOR_PAINT}"/>')
    welds = "\n".join(
        f'    <weld name={quoteattr("pick_" + o.name)} body1="base_link" body2={quoteattr(o.name)} active="false"/>'
        for o in layout.objects if o.graspable)
    w, hgt = offscreen
    return f"""<mujoco model="qwen_stack_arena_{layout.name}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic"/>
  <visual>
    <global offwidth="{w}" offheight="{hgt}"/>
    {quality}
    <headlight ambient="{_f(lt.ambient, lt.ambient, lt.ambient)}" diffuse="0.15 0.15 0.15" specular="0 0 0"/>
    <map znear="0.01"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.75 0.82 0.9" rgb2="0.35 0.4 0.5"
             width="64" height="64"/>
    <texture name="floor_tex" type="2d" builtin="checker" width="256" height="256"
             rgb1="0.55 0.55 0.55" rgb2="0.6 0.6 0.6"/>
    <material name="floor_mat" texture="floor_tex" texrepeat="{_f(hx * 2, hy * 2)}"/>
  </asset>
  <worldbody>
    <light name="sun" directional="true" pos="0 0 3" dir="{_f(*lt.direction)}"
           diffuse="{_f(lt.diffuse, lt.diffuse, lt.diffuse)}" specular="0.1 0.1 0.1" castshadow="{shadows}"/>
    <geom name="floor" type="plane" size="{_f(hx + 1, hy + 1, 0.1)}" material="floor_mat" group="{GROUP_WORLD}"
          friction="1.0 0.01 0.001"/>
{chr(10).join(walls)}
{chr(10).join(areas)}
{_robot_xml(robot, layout.robot_start.x, layout.robot_start.y, layout.robot_start.yaw)}
{''.join(_object_xml(o) for o in layout.objects)}
  </worldbody>
  <equality>
{welds}
  </equality>
  <actuator>
    <velocity name="left_wheel_motor" joint="left_wheel_joint" kv="{robot.motor_kv}"
              ctrlrange="{_f(-robot.max_wheel_speed, robot.max_wheel_speed)}"
              forcerange="{_f(-robot.motor_max_torque, robot.motor_max_torque)}"/>
    <velocity name="right_wheel_motor" joint="right_wheel_joint" kv="{robot.motor_kv}"
              ctrlrange="{_f(-robot.max_wheel_speed, robot.max_wheel_speed)}"
              forcerange="{_f(-robot.motor_max_torque, robot.motor_max_torque)}"/>
    <position name="camera_pan_motor" joint={quoteattr(robot.camera_pan_joint)} kp="2.0" kv="0.2"
              ctrlrange="{_f(-robot.pan_limit, robot.pan_limit)}"/>
  </actuator>
</mujoco>
"""
