"""Perception accuracy and speed, scored against the simulator's ground truth (no ROS).

Usage:
    MUJOCO_GL=egl .venv/bin/python bench/perception.py [--seeds 50] [--scenarios a,b,...] [--brain-missions N]

`--brain-missions N` adds the scenes of the first N held-out simulator missions of the brain
(qwen_stack.qwen_node.brain.sim_missions: every colour x cube/ball/cylinder, random lighting), the
scenes bench/brain_eval.py runs the model in, as one more scenario row.

Per seed and scenario: the robot stands at its start and pans the camera over 5 angles; at each,
3 frames 0.2 s apart (320x240; the node processes 5 per second) go through perception
(qwen_stack.perception.pipeline), and the last is scored against
the true object poses, in the base frame (so odometry drift does not count), for every object
in view within 3 m (in view: at least 20 of its pixels visible, from MuJoCo's segmentation
render). Then the robot turns to its freest direction and drives 2 m, perceiving at 5 Hz with
the camera ahead; the memory of objects out of view at the end is scored against the truth
(memory odom -> world through the current odometry and true pose: drift counts here).

Rows: "published" scores what perception_node publishes for the view: the memory entries
flagged in view, at their fused positions and with their names (the scored frame is the last of
the view's three); "raw" the detections of that one frame (names from the memory).
Metrics: recall (in-view objects detected within 0.3 m), precision (detections within 3 m that
are a real object within 0.3 m), correct name (named as the scenario object, `<colour>_<shape>`),
position error median/p95, memory error median, time per frame p50/p95 at 320x240 and 640x480.
Baseline in the same run: the same blobs placed by the blob centroid's ray on the flat floor,
without the laser.
Targets (issue 13): recall >= 95%, precision >= 98%, correct name >= 95%, error median <= 5 cm,
p95 <= 12 cm, memory error median <= 10 cm, p50 <= 10 ms (320x240), <= 25 ms (640x480).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from qwen_stack.perception.camera_geometry import pixel_rays, rays_at_height  # noqa: E402
from qwen_stack.perception.config import PerceptionConfig  # noqa: E402
from qwen_stack.perception.detection import Detection  # noqa: E402
from qwen_stack.geometry import CameraIntrinsics, Pose2D  # noqa: E402
from qwen_stack.perception.pipeline import Perceiver  # noqa: E402
from qwen_stack.perception.segmentation import find_blobs  # noqa: E402
from qwen_stack.sim.scenario import layout_from_dict, load_layout  # noqa: E402
from qwen_stack.sim.simulator import Simulator  # noqa: E402
from tests.perception.sim_sensors import sensors  # noqa: E402

SCENARIOS = ("fetch_red_cube", "perception_distractors", "perception_border", "fetch_out_of_view")
PANS = (-1.6, -0.8, 0.0, 0.8, 1.6)
FRAMES_PER_VIEW = 3          # frames processed per still view; the last one is scored
MATCH_RADIUS = 0.3
SCORE_RANGE = 3.0
MIN_VISIBLE_PX = 20          # at 320x240
VERBOSE = bool(os.environ.get("PERCEPTION_BENCH_VERBOSE"))
SHAPE_NAMES = {"box": "cube", "sphere": "ball", "cylinder": "cylinder"}


def expected_name(name: str) -> str:
    return name   # the scenarios name objects by the convention <colour>_<shape>


def visible_truth(sim: Simulator, w: int, h: int) -> dict[str, tuple[float, float, int]]:
    """name -> (x, y) in the base frame (true pose) and visible pixels, for objects and areas."""
    r = sim._renderers[(w, h)]
    r.enable_segmentation_rendering()
    r.update_scene(sim.data, camera="camera")
    seg = r.render()[..., 0]
    r.disable_segmentation_rendering()
    ids, counts = np.unique(seg, return_counts=True)
    px = {sim.model.geom(int(g)).name: int(c) for g, c in zip(ids, counts) if g >= 0}
    gt = sim.ground_truth()
    c, s = math.cos(gt.yaw), math.sin(gt.yaw)
    out = {}
    items = [(o.name, o.x, o.y, o.held) for o in sim.objects()]
    items += [(a.name, a.pose.x, a.pose.y, False) for a in sim.layout.areas]
    for name, x, y, held in items:
        if held:
            continue
        dx, dy = x - gt.x, y - gt.y
        out[name] = (c * dx + s * dy, -s * dx + c * dy, px.get(name, 0))
    return out


def published(perceiver: Perceiver, odom: Pose2D) -> tuple[list[Detection], list[str]]:
    """What perception publishes for the current view: the memory entries flagged in view, at
    their fused positions (base frame through the current odometry), with their names."""
    out, names = [], []
    for e in perceiver.memory.visible():
        if e.in_view:
            bx, by = odom.to_base(e.x, e.y)
            out.append(Detection(e.colour, e.shape, e.shape_share(), bx, by, e.width, e.height, e.solid, "memory",
                                 e.confidence, (0, 0, 0, 0)))
            names.append(e.name)
    return out, names


def baseline_detect(perceiver: Perceiver, rgb, cam: CameraIntrinsics, pan: float) -> list[Detection]:
    """Blob centroid ray on the flat floor, no laser (same blobs and classes as ours)."""
    ours = perceiver.detect(rgb, cam, pan, None)
    pose = perceiver.camera_pose(pan)
    h, w = rgb.shape[:2]
    min_px = max(4, int(round(perceiver.cfg.min_blob_pixels * (w * h) / (320 * 240))))
    out = []
    blobs = find_blobs(rgb, perceiver.cfg.colours, min_px)
    for d in ours:
        blob = next(b for b in blobs if (b.left, b.top, b.right, b.bottom) == d.box)
        ray = pixel_rays(np.array([blob.centroid[0]]), np.array([blob.centroid[1]]), cam, pose)
        p = rays_at_height(pose, ray, 0.0)[0]
        if np.all(np.isfinite(p)):
            out.append(Detection(d.colour, d.shape, d.shape_confidence, float(p[0]), float(p[1]), d.width, d.height,
                                 d.solid, "centroid", d.confidence, d.box))
    return out


class Score:
    def __init__(self, verbose: bool = VERBOSE) -> None:
        self.verbose = verbose   # print each miss and misnaming (PERCEPTION_BENCH_VERBOSE=1)
        self.truths = self.found = self.dets = self.true_dets = self.named = 0
        self.errors: list[float] = []

    def add(self, dets: list[Detection], names: list[str], truth: dict, scale: float) -> None:
        cam_in_view = {n: (x, y) for n, (x, y, px) in truth.items()
                       if px >= MIN_VISIBLE_PX * scale and math.hypot(x, y) <= SCORE_RANGE}
        anything = {n: (x, y) for n, (x, y, px) in truth.items() if px > 0}
        used: set[int] = set()
        for n, (x, y) in cam_in_view.items():
            self.truths += 1
            best, bd = None, MATCH_RADIUS
            for i, d in enumerate(dets):
                e = math.hypot(d.x - x, d.y - y)
                if i not in used and e < bd:
                    best, bd = i, e
            if best is not None:
                used.add(best)
                self.found += 1
                self.errors.append(bd)
                self.named += names[best] == expected_name(n)
                if self.verbose and (names[best] != expected_name(n) or bd > 0.1):
                    d = dets[best]
                    print(f"    {n}: as {names[best]} err {bd:.3f} at {math.hypot(x, y):.2f} m via {d.source if hasattr(d, 'source') else d.range_source} px={truth[n][2]} w={d.width:.3f} h={d.height:.3f} shape_conf={d.shape_confidence:.2f}")
            elif self.verbose:
                near = sorted(dets, key=lambda d: math.hypot(d.x - x, d.y - y))[:1]
                print(f"    MISSED {n} at {math.hypot(x, y):.2f} m px={truth[n][2]} nearest det "
                      + (f"{near[0].colour}_{near[0].shape} {math.hypot(near[0].x - x, near[0].y - y):.2f} m off" if near else "none"))
        for d in dets:
            if d.distance > SCORE_RANGE:
                continue
            self.dets += 1
            self.true_dets += any(math.hypot(d.x - x, d.y - y) < MATCH_RADIUS for x, y in anything.values())

    def row(self, label: str) -> str:
        e = np.array(self.errors) * 100 if self.errors else np.array([np.nan])
        return (f"{label:<34} {self.found / max(self.truths, 1):7.1%} {self.true_dets / max(self.dets, 1):9.1%} "
                f"{self.named / max(self.found, 1):7.1%} {np.median(e):8.1f} {np.percentile(e, 95):7.1f}"
                f"   ({self.truths} in view, {self.dets} detections)")


def drive_to_free(sim: Simulator, perceiver: Perceiver, distance: float, w: int, h: int) -> None:
    """Turn to the direction with the most laser room, then drive `distance`, perceiving at 5 Hz."""
    scan = sim.laser_scan()
    angles = sim.laser.angles()
    ok = np.where(np.isfinite(scan), scan, sim.laser.range_max)
    room = np.array([ok[np.abs(np.angle(np.exp(1j * (angles - a)))) < 0.25].min() for a in angles])
    target = float(angles[int(np.argmax(room))])
    sim.set_pan(0.0)
    start_yaw = sim.odometry().yaw
    t_end = sim.time + 8.0
    while sim.time < t_end:
        err = math.atan2(math.sin(start_yaw + target - sim.odometry().yaw), math.cos(start_yaw + target - sim.odometry().yaw))
        if abs(err) < 0.02:
            break
        sim.set_cmd_vel(0.0, max(-0.8, min(0.8, 2.0 * err)))
        sim.step_for(0.05)
    sim.set_cmd_vel(0.0, 0.0)
    sim.step_for(0.5)
    o0 = sim.odometry()
    next_frame = sim.time
    while math.hypot(sim.odometry().x - o0.x, sim.odometry().y - o0.y) < distance and sim.time < t_end + 15:
        sim.set_cmd_vel(0.3, 0.0)
        sim.step_for(0.02)
        if sim.time >= next_frame:
            rgb, cam, pan, laser, odom = sensors(sim, w, h)
            perceiver.process(rgb, sim.time, cam, pan, odom, laser)
            next_frame = sim.time + 0.2
    sim.set_cmd_vel(0.0, 0.0)
    sim.step_for(1.0)


def memory_errors(sim: Simulator, perceiver: Perceiver, w: int, h: int) -> tuple[list[float], int, int]:
    """Errors (m) of remembered objects now out of view, and (named right, total) over them."""
    truth = visible_truth(sim, w, h)
    gt, od = sim.ground_truth(), sim.odometry()
    errs, named, total = [], 0, 0
    for name, (bx, by, px) in truth.items():
        if px > 0:
            continue                           # in view now: not a memory test
        # truth in odom: base-frame point through the current odometry pose
        ox, oy = Pose2D(od.x, od.y, od.yaw).to_odom(bx, by)
        cands = [e for e in perceiver.memory.visible() if e.name == name]
        if not cands:
            colour = name.split("_")[0]
            cands = sorted((e for e in perceiver.memory.visible() if e.colour == colour),
                           key=lambda e: math.hypot(e.x - ox, e.y - oy))[:1]
        if not cands:
            continue
        total += 1
        named += cands[0].name == name
        errs.append(math.hypot(cands[0].x - ox, cands[0].y - oy))
    del gt
    return errs, named, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated; empty: none")
    ap.add_argument("--brain-missions", type=int, default=0,
                    help="also the scenes of the brain's first N held-out simulator missions (one seed each)")
    args = ap.parse_args()
    # (row label, [(seed, layout)]): layouts resolved up front (cheap; the simulator is what costs)
    jobs = [(scen, [(seed, load_layout(scen, seed)) for seed in range(args.seeds)])
            for scen in args.scenarios.split(",") if scen]
    if args.brain_missions:
        from qwen_stack.qwen_node.brain.sim_missions import held_out_missions
        jobs.append(("brain_missions", [(m.seed, layout_from_dict(m.scenario()))
                                        for m in held_out_missions(args.brain_missions)]))
    cfg = PerceptionConfig()
    ours, raw, base = Score(), Score(), Score(verbose=False)
    by_scenario: dict[str, Score] = {}
    mem_err: list[float] = []
    mem_named = mem_total = 0
    times = {(320, 240): [], (640, 480): []}
    t0 = time.monotonic()
    for scen, layouts in jobs:
        by_scenario[scen] = Score()
        for seed, layout in layouts:
            sim = Simulator(layout, max_render=(640, 480))
            sim.step_for(0.3)
            perceiver = Perceiver(cfg)
            for k, pan in enumerate(PANS):
                sim.set_pan(pan)
                sim.step_for(0.6)
                for _ in range(FRAMES_PER_VIEW):   # the node sees a still view several times (5 Hz)
                    sim.step_for(0.2)
                    rgb, cam, pan_now, laser, odom = sensors(sim, 320, 240)
                    t = time.perf_counter()
                    res = perceiver.process(rgb, sim.time, cam, pan_now, odom, laser)
                    times[(320, 240)].append(time.perf_counter() - t)
                truth = visible_truth(sim, 320, 240)
                if VERBOSE:
                    print(f"  {scen} seed {seed} pan {pan}")
                raw.add(res.detections, res.names, truth, 1.0)
                pub, names = published(perceiver, odom)
                ours.add(pub, names, truth, 1.0)
                by_scenario[scen].add(pub, names, truth, 1.0)
                bd = baseline_detect(perceiver, rgb, cam, pan_now)
                base.add(bd, [f"{d.colour}_{d.shape}" for d in bd], truth, 1.0)
                if k == 2:  # timing at 640x480 on a fresh memory (no accuracy scoring)
                    rgb2, cam2, _, _, _ = sensors(sim, 640, 480)
                    p2 = Perceiver(cfg)
                    t = time.perf_counter()
                    p2.process(rgb2, sim.time, cam2, pan_now, odom, laser)
                    times[(640, 480)].append(time.perf_counter() - t)
            drive_to_free(sim, perceiver, 2.0, 320, 240)
            e, n, tot = memory_errors(sim, perceiver, 320, 240)
            mem_err += e
            mem_named += n
            mem_total += tot
            sim.close()
        print(f"  {scen}: {len(layouts)} seeds done ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(f"perception bench: {', '.join(f'{s} x {len(ls)}' for s, ls in jobs)} seeds, {len(PANS)} views each, "
          f"320x240 ({time.monotonic() - t0:.0f} s)")
    print(f"{'':<34} {'recall':>7} {'precision':>9} {'name':>7} {'err p50':>8} {'p95':>7}   (cm)")
    print(ours.row("ours, published (in-view memory)"))
    print(raw.row("ours, raw detections of the frame"))
    print(base.row("baseline (centroid on flat floor)"))
    for scen, sc in by_scenario.items():
        print(sc.row(f"  ours, {scen}"))
    me = np.array(mem_err) * 100 if mem_err else np.array([np.nan])
    print(f"memory after driving 2 m, objects out of view: error median {np.median(me):.1f} cm, p95 "
          f"{np.percentile(me, 95):.1f} cm, named right {mem_named}/{mem_total}")
    for (w, h), ts in times.items():
        ts_ms = np.array(ts) * 1000
        print(f"time per frame {w}x{h}: p50 {np.median(ts_ms):.2f} ms, p95 {np.percentile(ts_ms, 95):.2f} ms "
              f"({len(ts)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
