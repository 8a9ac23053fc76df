"""qwen_node's settings: one dataclass, every field commented, bad values rejected by name.

The ROS shell declares one parameter per field (same name, same default) and builds this from
them; config/agent.yaml carries the same names with comments. The robot's camera and laser mounts
are not settings of the agent: it reads them from `robot_file` (config/robot.yaml), which the stack
sets once for every node.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from qwen_stack.robot import ROBOT_FILE

BACKENDS = ("replay", "local", "openai")
CAMERA_MODES = ("raw", "compressed", "none")
OBJECT_LOCATORS = ("none", "perception")
OPENAI_TOOL_MODES = ("native", "prompt")

DEFAULT_SYSTEM_PROMPT = (
    "You are the planner of a small wheeled robot with a camera, a laser scanner and a magnetic "
    "gripper at its front bumper. You see the camera image and act only by calling the tools you are "
    "given; every motion is checked by a safety supervisor, which may refuse it. Positions are in "
    "metres in the odom frame (where the robot started), angles in radians. Call detect_objects to "
    "see which objects are in view and remembered; look around (look_at, rotate) when what you need is "
    "not known yet. When the task is done, or cannot be done, answer in plain "
    "text without a tool call and say which."
)


@dataclass(frozen=True)
class AgentSettings:
    # --- model backend ---
    backend: str = "local"                  # local | openai | replay
    replay_script: str = "replay/fetch_red_cube.jsonl"  # replay: JSONL script (config/ name or path)
    replay_chunk_chars: int = 8             # replay: characters per streamed chunk
    model_dir: str = "models/brain-nvfp4"   # local: checkpoint directory (HF layout, BF16 or NVFP4; relative: paths.project_path)
    device: str = "auto"                    # local: auto | cpu | cuda
    layer_backend: str = "pytorch"          # local: pytorch | tensorrt | onnxruntime (decoder layers)
    trt_engine_dir: str = ""                # local + tensorrt: folder written by `qwen-stack build-engines`
    onnx_dir: str = ""                      # local + onnxruntime: folder written by `qwen-stack export-onnx`
    trt_precision: str = "w4a16"            # local + tensorrt: which engines to load (w4a16 | fp4 | fp8)
    compile_decode: bool = True             # local + pytorch: compiled decode step (~3x decode; compiles at start)
    openai_base_url: str = "http://127.0.0.1:8000/v1"  # openai: server root (…/v1)
    openai_model: str = "qwen3.5"           # openai: model name the server expects
    openai_api_key_env: str = "OPENAI_API_KEY"  # openai: NAME of the environment variable with the key
    openai_tools_mode: str = "native"       # openai: native (tools=…) | prompt (tool list in the system prompt)
    openai_timeout_s: float = 120.0         # openai: HTTP timeout per request
    max_new_tokens: int = 1024              # per model turn
    enable_thinking: bool = True            # Qwen3.5 thinking mode (<think>…</think> before acting)
    temperature: float = 0.0                # 0: greedy
    system_prompt: str = ""                 # empty: the built-in DEFAULT_SYSTEM_PROMPT

    # --- tools ---
    tools_file: str = "tools.yaml"          # tool registry (config/ name or path)
    safety_policy_file: str = "safety_policy.yaml"  # the supervisor's policy: limits shown to the model
    max_steps: int = 40                     # tool calls per task when the goal gives 0
    max_parse_retries: int = 3              # consecutive malformed model turns before the task fails
    max_turns: int = 80                     # model turns per task
    fold_threshold_chars: int = 6000        # accumulated tool-response text that triggers folding
    fold_keep_chars: int = 160              # characters a folded tool response keeps

    # --- camera and prompt images ---
    camera: str = "raw"                     # raw (sensor_msgs/Image) | compressed (JPEG) | none (language-model-only)
    frame_window_s: float = 5.0             # seconds of frames kept in the rolling window
    clip_frames: int = 1                    # frames per prompt: 1 = latest frame, >1 = a short clip
    clip_fps: float = 2.0                   # clip sampling rate (frames per second of the window)
    max_pixels: int = 640 * 480             # pixel budget per frame (frames are downscaled to fit)
    max_images_in_context: int = 1          # frames (or clips) kept in the conversation
    frame_stale_s: float = 2.0              # a frame older than this is not shown (the camera is stale)

    # --- grounding (point in the image -> goal pose; camera and laser mounts: the robot's) ---
    robot_file: str = ROBOT_FILE            # the robot description (config/ name or path); the stack sets it
    grounding_standoff_m: float = 0.35      # stop this far short of a grounded point
    object_standoff_m: float = 0.36         # go_to_object: distance from object to base origin (config/agent.yaml)
    object_locator: str = "perception"      # perception (objects by name from perception/objects) | none (go_to_point only)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"qwen_node parameter {name!r}: {why} (got {getattr(self, name)!r})")

        for name, allowed in (("backend", BACKENDS), ("camera", CAMERA_MODES), ("object_locator", OBJECT_LOCATORS),
                              ("openai_tools_mode", OPENAI_TOOL_MODES)):
            if getattr(self, name) not in allowed:
                raise bad(name, f"must be one of {allowed}")
        for name in ("replay_chunk_chars", "max_new_tokens", "max_steps", "max_turns", "fold_threshold_chars",
                     "fold_keep_chars", "clip_frames", "max_pixels"):
            if getattr(self, name) <= 0:
                raise bad(name, "must be > 0")
        for name in ("max_parse_retries", "max_images_in_context"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        for name in ("openai_timeout_s", "frame_window_s", "clip_fps", "frame_stale_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise bad(name, "must be a finite number > 0")
        for name in ("grounding_standoff_m", "object_standoff_m", "temperature"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise bad(name, "must be a finite number >= 0")
        if not isinstance(self.robot_file, str) or not self.robot_file.strip():
            raise bad("robot_file", "must name the robot description (config/robot.yaml)")
        if self.backend == "local" and not self.model_dir:
            raise bad("model_dir", "the local backend needs a checkpoint directory")
        if self.layer_backend not in ("pytorch", "tensorrt", "onnxruntime"):
            raise bad("layer_backend", "must be pytorch, tensorrt or onnxruntime")
        if self.layer_backend == "tensorrt" and not self.trt_engine_dir:
            raise bad("trt_engine_dir", "layer_backend tensorrt needs the folder written by `qwen-stack build-engines`")
        if self.layer_backend == "onnxruntime" and not self.onnx_dir:
            raise bad("onnx_dir", "layer_backend onnxruntime needs the folder written by `qwen-stack export-onnx`")
        if self.trt_precision not in ("w4a16", "fp4", "fp8"):
            raise bad("trt_precision", "must be w4a16, fp4 or fp8")
        if self.backend == "openai" and not self.openai_base_url.startswith(("http://", "https://")):
            raise bad("openai_base_url", "must start with http:// or https://")
        if not self.openai_api_key_env.replace("_", "").isalnum():
            raise bad("openai_api_key_env", "is the NAME of an environment variable, never the key itself")
        if self.clip_frames > 1 and self.clip_frames / self.clip_fps > self.frame_window_s:
            raise bad("clip_frames", f"a clip of {self.clip_frames} frames at {self.clip_fps} fps is longer "
                                     f"than frame_window_s={self.frame_window_s}")

    @property
    def effective_system_prompt(self) -> str:
        return self.system_prompt.strip() or DEFAULT_SYSTEM_PROMPT


def config_path(name: str):
    """A file named relative to config/ (subfolders allowed), or a path that exists."""
    from pathlib import Path

    from qwen_stack.paths import config_dir

    p = Path(name)
    return p if p.is_absolute() or p.exists() else config_dir() / name
