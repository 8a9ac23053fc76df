"""The MuJoCo world as Gazebo (gz sim Harmonic/Ionic) SDF: same robot (config/robot.yaml), same arena (WorldLayout).

    python -m qwen_stack.sim.gazebo_world [SCENARIO] [--seed N] [--out sim/gazebo]

writes <scenario>.sdf (world: arena, objects, floor areas, lighting, system plugins) and
qwen_stack_robot.sdf (the robot model that launch/sim_gazebo.launch.py spawns with `ros_gz_sim
create` at the scenario's start pose). The gz topic names used here are those bridged by
sim/gazebo/bridge.yaml onto the stack's ROS names (qwen_stack/topics.py).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from qwen_stack.sim.scenario import WorldLayout, load_layout
from qwen_stack.robot import RobotSpec, load_robot
from qwen_stack.sim.world import check_simulated

ROBOT_MODEL = "qwen_stack_robot"
WORLD_NAME = "qwen_stack_arena"
GAZEBO_DIR = Path(__file__).resolve().parent / "gazebo"

# gz topics (the bridge maps each onto the ROS name in the comment)
GZ_CMD_VEL = f"/model/{ROBOT_MODEL}/cmd_vel"            # <- cmd_vel
GZ_ODOM = f"/model/{ROBOT_MODEL}/odometry"              # -> odom
GZ_TF = f"/model/{ROBOT_MODEL}/tf"                      # -> /tf
GZ_GROUND_TRUTH = f"/model/{ROBOT_MODEL}/ground_truth"  # -> sim/ground_truth
GZ_JOINT_STATES = f"/world/{WORLD_NAME}/model/{ROBOT_MODEL}/joint_state"  # -> joint_states
GZ_IMAGE = f"/model/{ROBOT_MODEL}/camera/image"         # -> camera/image_raw
GZ_CAMERA_INFO = f"/model/{ROBOT_MODEL}/camera/camera_info"  # -> camera/camera_info
GZ_SCAN = f"/model/{ROBOT_MODEL}/scan"                  # -> scan
GZ_CAMERA_PAN = f"/model/{ROBOT_MODEL}/camera_pan"      # gz.msgs.Double, pan target (gz only)
GZ_CLOCK = "/clock"                                     # -> /clock


def _f(*v: float) -> str:
    return " ".join(f"{x:.6g}" for x in v)


def _box_inertia(m: float, hx: float, hy: float, hz: float) -> tuple[float, float, float]:
    return (m * ((2 * hy) ** 2 + (2 * hz) ** 2) / 12, m * ((2 * hx) ** 2 + (2 * hz) ** 2) / 12,
            m * ((2 * hx) ** 2 + (2 * hy) ** 2) / 12)


def _inertial(m: float, ixx: float, iyy: float, izz: float, pose: str = "0 0 0 0 0 0") -> str:
    return (f"<inertial><pose>{pose}</pose><mass>{m:.6g}</mass><inertia><ixx>{ixx:.6g}</ixx><ixy>0</ixy><ixz>0</ixz>"
            f"<iyy>{iyy:.6g}</iyy><iyz>0</iyz><izz>{izz:.6g}</izz></inertia></inertial>")


def _material(rgba) -> str:
    c = _f(*rgba)
    return f"<material><ambient>{c}</ambient><diffuse>{c}</diffuse><specular>0.1 0.1 0.1 1</specular></material>"


def _geometry(shape: str, size) -> str:
    if shape == "box":
        return f"<box><size>{_f(*(2 * s for s in size))}</size></box>"
    if shape == "cylinder":
        return f"<cylinder><radius>{size[0]:.6g}</radius><length>{2 * size[1]:.6g}</length></cylinder>"
    return f"<sphere><radius>{size[0]:.6g}</radius></sphere>"


def _static_box(name: str, pos, size, rgba, collide: bool = True) -> str:
    geom = _geometry("box", size)
    collision = f"<collision name='collision'><geometry>{geom}</geometry></collision>" if collide else ""
    return (f"<model name='{escape(name)}'><static>true</static><pose>{_f(*pos)}</pose><link name='link'>"
            f"{collision}<visual name='visual'><geometry>{geom}</geometry>{_material(rgba)}</visual></link></model>")


def world_sdf(layout: WorldLayout, physics_timestep: float = 0.002) -> str:
    hx, hy = layout.arena_half_size
    t, h = layout.wall_thickness, layout.wall_height
    wall_rgba = (0.75, 0.72, 0.65, 1.0)
    models = [
        _static_box("wall_north", (0, hy + t / 2, h / 2, 0, 0, 0), (hx + t, t / 2, h / 2), wall_rgba),
        _static_box("wall_south", (0, -hy - t / 2, h / 2, 0, 0, 0), (hx + t, t / 2, h / 2), wall_rgba),
        _static_box("wall_east", (hx + t / 2, 0, h / 2, 0, 0, 0), (t / 2, hy, h / 2), wall_rgba),
        _static_box("wall_west", (-hx - t / 2, 0, h / 2, 0, 0, 0), (t / 2, hy, h / 2), wall_rgba),
    ]
    for a in layout.areas:  # floor paint: visual only
        models.append(_static_box(a.name, (a.pose.x, a.pose.y, 0.0005, 0, 0, a.pose.yaw), (*a.half_size, 0.0005),
                                  a.rgba, collide=False))
    for o in layout.objects:
        if o.shape == "box":
            inertia = _box_inertia(o.mass, *o.size)
        elif o.shape == "cylinder":
            r, hh = o.size
            inertia = (o.mass * (3 * r * r + (2 * hh) ** 2) / 12,) * 2 + (o.mass * r * r / 2,)
        else:
            inertia = (0.4 * o.mass * o.size[0] ** 2,) * 3
        geom = _geometry(o.shape, o.size)
        models.append(
            f"<model name='{escape(o.name)}'><pose>{_f(o.pose.x, o.pose.y, o.half_height + 0.002, 0, 0, o.pose.yaw)}"
            f"</pose><link name='link'>{_inertial(o.mass, *inertia)}"
            f"<collision name='collision'><geometry>{geom}</geometry></collision>"
            f"<visual name='visual'><geometry>{geom}</geometry>{_material(o.rgba)}</visual></link></model>")
    lt = layout.lighting
    d = lt.diffuse
    return f"""<?xml version="1.0"?>
<!-- Generated by `python -m qwen_stack.sim.gazebo_world {layout.name}` (seed {layout.seed}); do not edit. -->
<sdf version="1.9">
  <world name="{WORLD_NAME}">
    <physics name="default_physics" type="ignored">
      <max_step_size>{physics_timestep}</max_step_size>
      <real_time_factor>1.0</real_time_factor>
    </physics>
    <plugin filename="gz-sim-physics-system" name="gz::sim::systems::Physics"/>
    <plugin filename="gz-sim-user-commands-system" name="gz::sim::systems::UserCommands"/>
    <plugin filename="gz-sim-scene-broadcaster-system" name="gz::sim::systems::SceneBroadcaster"/>
    <plugin filename="gz-sim-sensors-system" name="gz::sim::systems::Sensors">
      <render_engine>ogre2</render_engine>
    </plugin>
    <scene>
      <ambient>{_f(lt.ambient, lt.ambient, lt.ambient, 1)}</ambient>
      <background>0.75 0.82 0.9 1</background>
      <shadows>false</shadows>
    </scene>
    <light type="directional" name="sun">
      <cast_shadows>false</cast_shadows>
      <pose>0 0 3 0 0 0</pose>
      <diffuse>{_f(d, d, d, 1)}</diffuse>
      <specular>0.1 0.1 0.1 1</specular>
      <direction>{_f(*lt.direction)}</direction>
    </light>
    <model name="ground_plane">
      <static>true</static>
      <link name="link">
        <collision name="collision">
          <geometry><plane><normal>0 0 1</normal><size>{_f(2 * hx + 2, 2 * hy + 2)}</size></plane></geometry>
        </collision>
        <visual name="visual">
          <geometry><plane><normal>0 0 1</normal><size>{_f(2 * hx + 2, 2 * hy + 2)}</size></plane></geometry>
          {_material((0.58, 0.58, 0.58, 1))}
        </visual>
      </link>
    </model>
    {chr(10).join('    ' + m for m in models).strip()}
  </world>
</sdf>
"""


def robot_sdf(spec: RobotSpec | None = None, camera=(320, 240, 15.0), laser=(360, 10.0, 8.0)) -> str:
    """The robot as a gz model (None: config/robot.yaml); link/joint/frame names are those of the MuJoCo robot
    and REP 105."""
    spec = spec if spec is not None else load_robot()
    check_simulated(spec)
    pan_joint = spec.camera_pan_joint
    r, sep, hw = spec.wheel_radius, spec.wheel_separation, spec.wheel_half_width
    cx, cy, cz = spec.chassis_half_size
    caster_z = -(r - spec.caster_radius)
    wheel_i = (spec.wheel_mass * (3 * r * r + (2 * hw) ** 2) / 12, spec.wheel_mass * r * r / 2)
    base_i = (0.03, 0.04, 0.06)
    cam_w, cam_h, cam_hz = camera
    beams, laser_hz, range_max = laser
    hfov = 2 * math.atan(math.tan(math.radians(spec.camera_fovy_deg) / 2) * cam_w / cam_h)
    lx, ly, lz = spec.laser_xyz
    px, py, pz = spec.camera_xyz
    tilt = math.radians(spec.camera_tilt_deg)

    def wheel(side: str, y: float) -> str:
        return f"""
    <link name="{side}_wheel">
      <pose relative_to="base_link">0 {y:.6g} 0 {-math.pi / 2:.6g} 0 0</pose>
      {_inertial(spec.wheel_mass, wheel_i[0], wheel_i[0], wheel_i[1])}
      <collision name="collision">
        <geometry><sphere><radius>{r:.6g}</radius></sphere></geometry>
        <surface><friction><ode><mu>1.2</mu><mu2>1.2</mu2></ode></friction></surface>
      </collision>
      <visual name="visual">
        <geometry><cylinder><radius>{r:.6g}</radius><length>{2 * hw:.6g}</length></cylinder></geometry>
        {_material((0.1, 0.1, 0.1, 1))}
      </visual>
    </link>
    <joint name="{side}_wheel_joint" type="revolute">
      <parent>base_link</parent>
      <child>{side}_wheel</child>
      <axis><xyz expressed_in="base_link">0 1 0</xyz></axis>
    </joint>"""

    def caster(name: str, x: float, z: float) -> str:
        return f"""
      <collision name="{name}">
        <pose>{_f(x, 0, z, 0, 0, 0)}</pose>
        <geometry><sphere><radius>{spec.caster_radius:.6g}</radius></sphere></geometry>
        <surface><friction><ode><mu>0</mu><mu2>0</mu2></ode></friction></surface>
      </collision>"""

    return f"""<?xml version="1.0"?>
<!-- Generated by `python -m qwen_stack.sim.gazebo_world`; do not edit. Same geometry as sim/world.py. -->
<sdf version="1.9">
  <model name="{ROBOT_MODEL}">
    <link name="base_link">
      <pose>0 0 {r:.6g} 0 0 0</pose>
      {_inertial(spec.base_mass, *base_i, pose=_f(spec.chassis_offset_x, 0, -0.01, 0, 0, 0))}
      <collision name="chassis">
        <pose>{_f(spec.chassis_offset_x, 0, cz + 0.005, 0, 0, 0)}</pose>
        <geometry><box><size>{_f(2 * cx, 2 * cy, 2 * cz)}</size></box></geometry>
      </collision>
      <visual name="chassis">
        <pose>{_f(spec.chassis_offset_x, 0, cz + 0.005, 0, 0, 0)}</pose>
        <geometry><box><size>{_f(2 * cx, 2 * cy, 2 * cz)}</size></box></geometry>
        {_material((0.85, 0.85, 0.88, 1))}
      </visual>{caster("caster", spec.caster_x, caster_z)}{caster("front_caster", spec.front_caster_x,
                                                                      caster_z + spec.front_caster_gap)}
    </link>{wheel("left", sep / 2)}{wheel("right", -sep / 2)}
    <link name="laser">
      <pose relative_to="base_link">{_f(lx, ly, lz, 0, 0, 0)}</pose>
      {_inertial(0.05, 1e-5, 1e-5, 1e-5)}
      <sensor name="laser" type="gpu_lidar">
        <topic>{GZ_SCAN}</topic>
        <gz_frame_id>laser</gz_frame_id>
        <update_rate>{laser_hz:g}</update_rate>
        <always_on>true</always_on>
        <lidar>
          <scan><horizontal><samples>{beams}</samples><resolution>1</resolution>
            <min_angle>{-math.pi:.6f}</min_angle><max_angle>{math.pi * (1 - 2 / beams):.6f}</max_angle></horizontal></scan>
          <range><min>0.05</min><max>{range_max:g}</max><resolution>0.01</resolution></range>
        </lidar>
      </sensor>
    </link>
    <joint name="laser_joint" type="fixed"><parent>base_link</parent><child>laser</child></joint>
    <link name="camera_pan_link">
      <pose relative_to="base_link">{_f(px, py, pz, 0, 0, 0)}</pose>
      {_inertial(0.05, 1e-5, 1e-5, 1e-5)}
    </link>
    <joint name="{pan_joint}" type="revolute">
      <parent>base_link</parent>
      <child>camera_pan_link</child>
      <axis><xyz>0 0 1</xyz><limit><lower>{-spec.pan_limit:g}</lower><upper>{spec.pan_limit:g}</upper></limit>
        <dynamics><damping>0.05</damping></dynamics></axis>
    </joint>
    <link name="camera_link">
      <pose relative_to="camera_pan_link">0 0 0 0 {tilt:.6g} 0</pose>
      {_inertial(0.05, 1e-5, 1e-5, 1e-5)}
      <visual name="housing">
        <geometry><box><size>0.03 0.06 0.03</size></box></geometry>
        {_material((0.1, 0.1, 0.1, 1))}
      </visual>
      <sensor name="camera" type="camera">
        <pose>{spec.camera_lens_x:.6g} 0 0 0 0 0</pose>
        <topic>{GZ_IMAGE}</topic>
        <gz_frame_id>camera_optical_frame</gz_frame_id>
        <update_rate>{cam_hz:g}</update_rate>
        <always_on>true</always_on>
        <camera>
          <camera_info_topic>{GZ_CAMERA_INFO}</camera_info_topic>
          <horizontal_fov>{hfov:.6f}</horizontal_fov>
          <image><width>{cam_w}</width><height>{cam_h}</height><format>R8G8B8</format></image>
          <clip><near>0.01</near><far>50</far></clip>
        </camera>
      </sensor>
    </link>
    <joint name="camera_joint" type="fixed"><parent>camera_pan_link</parent><child>camera_link</child></joint>
    <plugin filename="gz-sim-diff-drive-system" name="gz::sim::systems::DiffDrive">
      <left_joint>left_wheel_joint</left_joint>
      <right_joint>right_wheel_joint</right_joint>
      <wheel_separation>{sep:g}</wheel_separation>
      <wheel_radius>{r:g}</wheel_radius>
      <max_linear_acceleration>2.0</max_linear_acceleration>
      <max_angular_acceleration>15.0</max_angular_acceleration>
      <topic>{GZ_CMD_VEL}</topic>
      <odom_topic>{GZ_ODOM}</odom_topic>
      <tf_topic>{GZ_TF}</tf_topic>
      <frame_id>odom</frame_id>
      <child_frame_id>base_link</child_frame_id>
      <odom_publish_frequency>30</odom_publish_frequency>
    </plugin>
    <plugin filename="gz-sim-joint-state-publisher-system" name="gz::sim::systems::JointStatePublisher">
      <topic>{GZ_JOINT_STATES}</topic>
      <joint_name>left_wheel_joint</joint_name>
      <joint_name>right_wheel_joint</joint_name>
      <joint_name>{pan_joint}</joint_name>
    </plugin>
    <plugin filename="gz-sim-joint-position-controller-system" name="gz::sim::systems::JointPositionController">
      <joint_name>{pan_joint}</joint_name>
      <topic>{GZ_CAMERA_PAN}</topic>
      <p_gain>2.0</p_gain>
      <d_gain>0.2</d_gain>
    </plugin>
    <plugin filename="gz-sim-odometry-publisher-system" name="gz::sim::systems::OdometryPublisher">
      <odom_frame>world</odom_frame>
      <robot_base_frame>base_link</robot_base_frame>
      <odom_topic>{GZ_GROUND_TRUTH}</odom_topic>
      <odom_publish_frequency>30</odom_publish_frequency>
      <dimensions>2</dimensions>
    </plugin>
  </model>
</sdf>
"""


def write_files(scenario: str, seed: int | None, out: Path) -> tuple[Path, Path, WorldLayout]:
    """Write <scenario>.sdf and qwen_stack_robot.sdf into `out`; returns their paths and the layout."""
    layout = load_layout(scenario, seed)
    out.mkdir(parents=True, exist_ok=True)
    world = out / f"{layout.name}.sdf"
    robot = out / f"{ROBOT_MODEL}.sdf"
    world.write_text(world_sdf(layout))
    robot.write_text(robot_sdf())
    return world, robot, layout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the Gazebo SDF of a scenario and of the robot.")
    ap.add_argument("scenario", nargs="?", default="fetch_red_cube")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", type=Path, default=GAZEBO_DIR)
    args = ap.parse_args(argv)
    world, robot, layout = write_files(args.scenario, args.seed, args.out)
    s = layout.robot_start
    print(f"{world}\n{robot}\nspawn pose: x={s.x:.3f} y={s.y:.3f} yaw={s.yaw:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
