"""`qwen-stack record` (the recorder node with a few settings from the command line) and
`qwen-stack bag summary FILE|FOLDER` (the mission timeline of a recording)."""
from __future__ import annotations

import argparse
import sys
from collections import Counter

from qwen_stack.paths import config_file


def record_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="qwen-stack record",
                                description="Record the stack's topics to MCAP (rosbag2 layout) until Ctrl-C. "
                                            "Settings: config/recorder.yaml; these options override it.")
    p.add_argument("--out", help="output folder (default: output_dir of config/recorder.yaml)")
    p.add_argument("--name", help="recording name (default: qwen_stack_<date>-<time>)")
    p.add_argument("--topics", nargs="+", metavar="TOPIC", help="topics to record instead of the configured list")
    p.add_argument("--camera-rate", type=float, help="Hz of camera frames kept (0 = all)")
    p.add_argument("--no-images", action="store_true", help="record neither the camera nor the annotated image")
    p.add_argument("--namespace", default="", help="robot namespace the stack runs in (e.g. robot1)")
    a = p.parse_args(argv)
    ros = ["--ros-args", "--params-file", str(config_file("recorder.yaml"))]

    def param(name: str, value: str) -> None:
        ros.extend(["-p", f"{name}:={value}"])

    if a.out:
        param("output_dir", a.out)
    if a.name:
        param("recording_name", a.name)
    if a.topics:
        param("topics", "[" + ",".join(f'"{t}"' for t in a.topics) + "]")
    if a.camera_rate is not None:
        param("camera_rate", repr(float(a.camera_rate)))
    if a.no_images:
        param("camera_topic", '""')
        param("annotated_image_topic", '""')
    if a.namespace:
        ros.extend(["-r", f"__ns:=/{a.namespace.strip('/')}"])
    from qwen_stack.recorder.node import main

    return main(["qwen-stack-record", *ros])


def bag_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="qwen-stack bag", description="Read flight-recorder MCAP files.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="the mission timeline: instruction, tool calls with verdicts and "
                                       "outcomes, e-stops, take-overs, approvals")
    s.add_argument("path", help="an .mcap file or a recording folder (its files in order)")
    a = p.parse_args(argv)
    from qwen_stack.recorder.reading import read_bag, recording_files
    from qwen_stack.recorder.timeline import format_timeline, mission_timeline, on_timeline

    files = recording_files(a.path)
    if not files or not all(f.is_file() for f in files):
        print(f"qwen-stack bag: no .mcap file at {a.path}", file=sys.stderr)
        return 2
    messages, counts, times = [], Counter(), []
    for f in files:
        try:
            r = read_bag(f, keep=on_timeline)
        except OSError as exc:
            print(f"qwen-stack bag: cannot read {f}: {exc}", file=sys.stderr)
            return 2
        if not r.counts and r.error and not r.channels:
            print(f"qwen-stack bag: {f} is not a readable MCAP file ({r.error})", file=sys.stderr)
            return 2
        state = "complete" if r.complete else f"not closed (writer killed?), read up to the cut: {r.error}"
        print(f"{f}: {sum(r.counts.values())} messages, {state}")
        messages += r.messages
        counts += r.counts
        times += [m.log_time for m in r.messages]
    if counts:
        span = f"{(max(times) - min(times)) * 1e-9:.1f} s of mission topics; " if times else ""
        print(span + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    events = mission_timeline(messages)
    print(format_timeline(events) if events else "(no mission events: agent, safety or operator topics)")
    return 0
