"""Topic, service and action names of the stack: one source of truth for every node and test.

Names are relative, so a robot namespace (launcher `namespace:`) puts a whole stack under
/<robot>/... and two stacks coexist on one ROS domain. Only /clock and /diagnostics are global.
"""

# --- base motion: the safety supervisor is the ONLY publisher of BASE_CMD_VEL -------------
BASE_CMD_VEL = "cmd_vel"                       # geometry_msgs/Twist, supervisor -> base (sim or robot driver)
AUTONOMY_CMD_VEL = "cmd_vel/autonomy"          # geometry_msgs/Twist, skills/planner -> supervisor
TELEOP_CMD_VEL = "cmd_vel/teleop"              # geometry_msgs/Twist, console -> supervisor
TELEOP_LOCK = "teleop/lock"                    # std_msgs/Bool, held True while the operator has control

# --- sensors -------------------------------------------------------------------------------
CAMERA_IMAGE = "camera/image_raw"              # sensor_msgs/Image
CAMERA_COMPRESSED = "camera/image_raw/compressed"  # sensor_msgs/CompressedImage (JPEG)
CAMERA_INFO = "camera/camera_info"             # sensor_msgs/CameraInfo
SCAN = "scan"                                  # sensor_msgs/LaserScan
ODOM = "odom"                                  # nav_msgs/Odometry
JOINT_STATES = "joint_states"                  # sensor_msgs/JointState
ROBOT_DESCRIPTION = "robot_description"        # std_msgs/String, URDF, transient local (sim/robot_description.py)
SIM_GROUND_TRUTH = "sim/ground_truth"          # nav_msgs/Odometry, true base pose (tests and benches only)
SIM_OBJECTS = "sim/objects"                    # std_msgs/String, JSON of object poses (tests, benches only)
CLOCK = "/clock"                               # rosgraph_msgs/Clock
DIAGNOSTICS = "/diagnostics"                   # diagnostic_msgs/DiagnosticArray

# --- perception (qwen_stack.perception) ---------------------------------------------------
PERCEPTION_OBJECTS = "perception/objects"      # qwen_stack_interfaces/DetectedObjects, memory in odom + in-view flags
PERCEPTION_IMAGE_ANNOTATED = "perception/image_annotated"  # sensor_msgs/Image (rgb8), boxes and labels
PERCEPTION_MARKERS = "perception/markers"      # visualization_msgs/MarkerArray of the memory

# --- safety supervisor ---------------------------------------------------------------------
SAFETY_VERDICT = "safety/verdict"              # qwen_stack_interfaces/SafetyVerdict
SAFETY_ESTOP_TOPIC = "safety/estop"            # std_msgs/Bool, True latches the e-stop
SAFETY_ESTOP_STATE = "safety/estop_latched"    # std_msgs/Bool (transient local), current latch state
SAFETY_ZONES = "safety/zones"                  # std_msgs/String (transient local), JSON of the supervisor's zones
SAFETY_TRIGGER_ESTOP = "safety/trigger_estop"  # std_srvs/Trigger
SAFETY_RESET_ESTOP = "safety/reset_estop"      # qwen_stack_interfaces/ResetEStop
SAFETY_CALL_TOOL = "safety/call_tool"          # qwen_stack_interfaces/CallTool, proxy for actuating services
SAFETY_APPROVAL_REQUEST = "safety/approval_request"  # qwen_stack_interfaces/ApprovalRequest
SAFETY_APPROVE = "safety/approve"              # qwen_stack_interfaces/Approve
SAFETY_CANCEL_CALLS = "safety/cancel_calls"    # std_srvs/Trigger: the caller's task was cancelled; calls in progress refused
OPERATOR_HEARTBEAT = "operator/heartbeat"      # std_msgs/Empty, from the console while it is open

# --- robot skills (sim/skills_node.py; a real robot replaces that node) ---------------------
SKILL_DRIVE_DISTANCE = "skills/drive_distance"  # qwen_stack_interfaces/DriveDistance
SKILL_ROTATE = "skills/rotate"                 # qwen_stack_interfaces/Rotate
SKILL_GO_TO_POSE = "skills/go_to_pose"         # qwen_stack_interfaces/GoToPose
SKILL_GRASP = "skills/grasp"                   # qwen_stack_interfaces/Grasp
SKILL_RELEASE = "skills/release"               # qwen_stack_interfaces/Release
SKILL_DESCRIBE_STATE = "skills/describe_state"  # qwen_stack_interfaces/DescribeState
SKILL_LOOK_AT = "skills/look_at"               # qwen_stack_interfaces/LookAt
GRIPPER_HELD = "gripper/held"                  # std_msgs/String (latched): name of the held object, "" = none

# --- agent ---------------------------------------------------------------------------------
AGENT_RUN_TASK = "agent/run_task"              # qwen_stack_interfaces/RunTask (action)
AGENT_THINKING = "agent/thinking"              # std_msgs/String, streamed model output
AGENT_STATUS = "agent/status"                  # std_msgs/String, JSON status of the agent
AGENT_TOOL_CALLS = "agent/tool_calls"          # qwen_stack_interfaces/ToolCall

# --- simulator's own services (skills_node calls them; a real robot has its own drivers) ----
SIM_ATTACH = "sim/attach"                      # qwen_stack_interfaces/Grasp: magnetic pick of the named/nearest object
SIM_DETACH = "sim/detach"                      # qwen_stack_interfaces/Release: drop the held object
SIM_SET_PAN = "sim/set_pan"                    # qwen_stack_interfaces/LookAt: camera pan target, radians (+ left)
