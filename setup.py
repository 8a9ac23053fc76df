"""ament_python package `qwen_stack`.

The design card's folders (qwen_node/, safety/, sim/, trt_engines/, console/) are mapped
under one import namespace, `qwen_stack.*`, so that no top-level import name clashes with
a PyPI package (`safety` and `sim` both exist there; `launch` is ROS's own).
"""
from glob import glob

from setuptools import setup

PACKAGE = "qwen_stack"
# folder on disk -> import name
PARTS = {
    "qwen_stack": PACKAGE,
    "qwen_node": f"{PACKAGE}.qwen_node",
    "safety": f"{PACKAGE}.safety",
    "sim": f"{PACKAGE}.sim",
    "trt_engines": f"{PACKAGE}.trt_engines",
    "console": f"{PACKAGE}.console",
    "perception": f"{PACKAGE}.perception",
    "recorder": f"{PACKAGE}.recorder",
}


def _packages():
    import os

    found, dirs = [], {}
    for folder, name in PARTS.items():
        for root, _subdirs, files in os.walk(folder):
            if "__init__.py" in files:
                rel = os.path.relpath(root, folder)
                pkg = name if rel == "." else name + "." + rel.replace(os.sep, ".")
                found.append(pkg)
                dirs[pkg] = root
    return found, dirs


packages, package_dir = _packages()

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=packages,
    package_dir=package_dir,
    package_data={
        "": ["*.yaml", "*.xml", "*.html", "*.js", "*.css", "*.json", "*.txt", "*.md"],
        f"{PACKAGE}.sim": ["scenarios/*.yaml", "gazebo/*"],
        f"{PACKAGE}.console": ["static/*"],
        f"{PACKAGE}.trt_engines": ["typing_stubs/*/*.pyi"],
        f"{PACKAGE}.qwen_node.engine": ["kernels/*.c", "kernels/*.cpp"],  # C/C++ kernels, built on first use (engine/native.py)
    },
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml") + glob("config/*.xml")),
        ("share/" + PACKAGE + "/config/replay", glob("config/replay/*.jsonl")),
        # the stand-in brain that the default profile's qwen_node runs (config/agent.yaml model_dir)
        *(("share/" + PACKAGE + "/" + d, glob(d + "/*")) for d in ("models/brain", "models/brain-nvfp4")),
    ],
    install_requires=["setuptools"],
    # TensorRT engines on NVIDIA GPUs (trt_engines/); never needed on CPU machines.
    extras_require={"gpu": ["tensorrt>=10.8", "pycuda"]},
    zip_safe=False,
    maintainer="qwen_stack developers",
    description="ROS 2 perception-and-planning stack around a Qwen3.5 VLM",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "qwen-stack = qwen_stack.cli:main",
            "camera_node = qwen_stack.camera.node:main",
            "sim_node = qwen_stack.sim.node:main",
            "skills_node = qwen_stack.sim.skills_node:main",
            "safety_supervisor = qwen_stack.safety.node:main",
            "qwen_node = qwen_stack.qwen_node.node:main",
            "console_node = qwen_stack.console.node:main",
            "perception_node = qwen_stack.perception.node:main",
            "recorder_node = qwen_stack.recorder.node:main",
        ],
    },
)
