"""The expert policy: given a mission and the symbolic world, the assistant turns a careful
planner would write (short English thinking, then one tool call, or a final answer).

Each turn is rendered exactly as Qwen3.5 writes it after the prompt's "<think>\\n":
"{thinking}\\n</think>\\n\\n<tool_call>\\n<function=NAME>\\n<parameter=K>\\nV\\n</parameter>\\n</function>\\n</tool_call>"
(the chat format's own tool-call layout) or "{thinking}\\n</think>\\n\\n{answer}".
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Generator

from .phrasing import COLOURS, SHAPES
from .world import SymbolicWorld

SEARCH_TURN = 1.2          # rad per search rotation (the camera sees ~1.3 rad)
SEARCH_STEPS = 5           # 5 x 1.2 rad: a full turn
SEARCH_SPEED = 0.8         # rad/s
MIDDLE_RADIUS = 1.0        # m from the start point: a full turn there is the whole search (search_elsewhere)
MAX_GRASPS = 3             # attempts before giving up


@dataclass
class Turn:
    thinking: str
    call: tuple[str, dict[str, Any]] | None = None
    answer: str = ""
    train: bool = True         # False: a mistake the expert makes on purpose (kept out of the loss)

    def raw(self) -> str:
        head = f"{self.thinking}\n</think>\n\n"
        if self.call is None:
            return head + self.answer
        name, args = self.call
        s = f"<tool_call>\n<function={name}>\n"
        for k, v in args.items():
            s += f"<parameter={k}>\n{_fmt(v)}\n</parameter>\n"
        return head + s + "</function>\n</tool_call>"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def human(name: str) -> str:
    return name.replace("_", " ")


@dataclass
class Mission:
    kind: str                  # fetch | fetch2 | goto | look | drive | turn | unsafe | missing
    targets: list[str] = field(default_factory=list)
    area: str = ""
    amount: float = 0.0        # drive: metres (signed); turn: radians (signed)
    unsafe_reason: str = ""


Policy = Generator[Turn, dict, None]


class Expert:
    def __init__(self, world: SymbolicWorld, rng: random.Random, slip_rate: float = 0.0,
                 slip_rng: random.Random | None = None, miss_rate: float = 0.0,
                 miss_rng: random.Random | None = None, look_after_grasp: bool = False, miss_repeat: float = 0.0,
                 search_elsewhere: bool = False, quote_errors: bool = False, release_slip: float = 0.0,
                 release_rng: random.Random | None = None, reason_first: bool = False):
        self.w, self.rng = world, rng
        # a denied release's report opens with the thought's own sentence ("The release was refused: operator
        # denied the request."), the one the model copies right (runs/sim_faults16, 19, 20: right in every
        # thought, wrong after the report's "... at the blue square was refused ("; brain21's parenthesised
        # thought, new to brain15's fine-tune, was wrong too), and the reason falls in the weighted opening
        self.reason_first = reason_first
        # chance that, with the object found but not yet grasped, the expert first drives to the area and calls
        # release (untrained, as the slips): the world answers "not holding anything" and the trained recovery
        # reads that and goes back for the object. In the simulator the model lost track of what it held after
        # a moved object and reported that failed release as an operator's denial (runs/sim_full16 moved-1,
        # runs/sim_faults16 moved-0): the data never showed that result. Its own stream, as the slips.
        self.release_slip = release_slip
        self.release_rng = release_rng or random.Random(0)
        # the thought after a "no object named ..." failure starts with the error's own words, as the thoughts
        # after a timeout, a failed grasp or a refusal do: the recovery is decided on the words just copied
        # (runs/ro_brain12: after "no object named 'blue_cube' in memory" the model wrote the timeout's
        # "go_to_object failed: timed out ... Try once more" and called again 20 times)
        self.quote_errors = quote_errors
        # after a full turn without the name, drive back to where the robot started (the odom origin, near the
        # middle of the scene) and turn once more before giving up: a rotation in place never reaches an area out
        # of perception's range (runs/brain_eval_sim21 none-16: the square 3.9 m away, 37 rotations, never seen)
        self.search_elsewhere = search_elsewhere
        self.outcome = "unknown"   # success | failed | refused: what the final answer claims
        # chance that a go_to_object is first written with a near-miss name (another colour or shape, not in
        # memory): the planner's "no object named ..." error follows and the expert recovers with the exact
        # name. The slip is never trained on (Turn.train False); the recovery is.
        self.slip_rate = slip_rate
        self.slip_rng = slip_rng or random.Random(0)   # its own stream: the rest of the data is unchanged by it
        # chance that, before searching for a name perception does not know yet (the target, or the area once
        # the object is held), the expert calls go_to_object with it anyway: the planner's "no object named
        # ... in memory" error follows and the expert searches (rotate, detect). Untrained like the slip; the
        # search after the error is trained: the right name that is not in the known list means look around,
        # not call again (seen in the simulator: the model retried the area's name 30 times).
        self.miss_rate = miss_rate
        self.miss_rng = miss_rng or random.Random(0)
        self.miss_repeat = miss_repeat
        # detect_objects right after a grasp, before deciding whether the area is known: the decision then
        # reads the newest tool response instead of a detection many turns back (in the simulator the model
        # called the area's name before perception had seen it). Its thoughts draw on self.rng only after
        # the grasp, so the data without it is unchanged.
        self.look_after_grasp = look_after_grasp
        self.arrived: str | None = None   # go_to_object's look closer (world.look_closer) approached this already

    def pick(self, *options: str) -> str:
        return self.rng.choice(options)

    # ---- mission kinds -----------------------------------------------------------------------
    def run(self, m: Mission) -> Policy:
        kinds = {"fetch": self._fetch, "fetch2": self._fetch, "missing": self._fetch, "goto": self._goto_only,
                 "look": self._look, "drive": self._drive, "turn": self._turn, "unsafe": self._unsafe}
        yield from kinds[m.kind](m)

    def _fetch(self, m: Mission) -> Policy:
        things = " and ".join(m.targets)
        r = yield Turn(self.pick(f"The task is to bring {things} to {m.area}. First I check what the camera sees.",
                                 f"Goal: {things} onto {m.area}. Let me detect the objects around me first.",
                                 f"I need to move {things} to {m.area}. Start by detecting objects."),
                       ("detect_objects", {}))
        if self._stopped(r):
            return (yield from self._report_rejection(r))
        done: list[str] = []
        for obj in m.targets:
            found = yield from self._find(obj)
            if isinstance(found, str):
                return (yield from self._final_failure(found, done, m.area))
            if not found:
                return (yield from self._not_found(obj, done, m.area))
            think = None
            if (self.release_slip and self.release_rng.random() < self.release_slip and m.area in self.w.memory
                    and not self.w.faults.deny_release and self.w.held is None):
                think = yield from self._release_slip(obj, m.area)
            ok = yield from self._pick_up(obj, think)
            if ok is not True:
                return (yield from self._final_failure(ok, done, m.area))
            to_area = f"I hold {obj}. Now drive to {m.area}."
            if self.look_after_grasp:
                yield Turn(self.pick(f"I hold {obj}. Detect objects to see whether {m.area} is known.",
                                     f"{obj} is held. Detect objects to find {m.area}."),
                           ("detect_objects", {}))
                if m.area in self.w.memory:
                    to_area = self.pick(f"{m.area} is in the list. Drive there with {obj}.",
                                        f"{m.area} is in memory. Drive there with {obj}.")
            found = yield from self._find(m.area)
            if isinstance(found, str):
                return (yield from self._final_failure(found, done, m.area, holding=obj))
            if not found:
                return (yield from self._not_found(m.area, done, m.area, holding=obj))
            r = yield from self._goto(m.area, to_area)
            if r is not True:
                return (yield from self._final_failure(r, done, m.area, holding=obj))
            r = yield Turn(self.pick(f"I am at {m.area}. Release {obj} here.",
                                     f"At {m.area} with {obj}. Put it down."), ("release", {}))
            if r["status"] != "succeeded":
                reason = "; ".join(r.get("reasons", [])) or r.get("response", {}).get("message", "")
                self.outcome = "failed"
                delivered = f"; already delivered: {', '.join(human(d) for d in done)}" if done else ""
                thought = f"The release was refused: {reason}."
                answer = (f"{thought} I did not finish: I am still holding the {human(obj)}, not put down at the "
                          f"{human(m.area)}{delivered}. Please decide what to do." if self.reason_first else
                          f"I did not finish: releasing the {human(obj)} at the {human(m.area)} was refused "
                          f"({reason}). I am still holding the {human(obj)}{delivered}. Please decide what to do.")
                return (yield Turn(f"{thought} I must not retry it; stop and report.", answer=answer))
            done.append(obj)
        self.outcome = "success"
        objs = " and the ".join(human(o) for o in m.targets)
        yield Turn(self.pick(f"{things} released on {m.area}. The task is done.",
                             f"Released on {m.area}. Done."),
                   answer=self.pick(f"Done: the {objs} {'is' if len(m.targets) == 1 else 'are'} on the {human(m.area)}.",
                                    f"I brought the {objs} to the {human(m.area)}."))

    def _goto(self, name: str, thinking: str) -> Generator[Turn, dict, Any]:
        """go_to_object with recovery: True, or a failure description for the final answer (False: the look
        closer of go_to_object found something else)."""
        if self.arrived == name:        # _find's look closer went on to approach it
            self.arrived = None
            return True
        tries = 0
        wrong = self._near_miss(name) if self.slip_rate and self.slip_rng.random() < self.slip_rate else None
        if wrong is not None:
            r = yield Turn(thinking, ("go_to_object", {"object_name": wrong}), train=False)
            thinking = self.slip_rng.choice((
                f"go_to_object failed: there is no {wrong} in memory. The name I need is {name}, which is in the "
                f"known list; call it exactly.",
                f"Wrong name: {wrong} is not known. The right one is {name}. Try again with it."))
            if self.quote_errors:   # after the draw above, so the slip stream stays the data's without the flag
                thinking = (f"go_to_object failed: {_error_head(r)}. The name I need is {name}, which is in the "
                            f"known list; call it exactly.")
        while True:
            tries += 1
            r = yield Turn(thinking, ("go_to_object", {"object_name": name}))
            if r["status"] == "succeeded":
                return True
            if r["status"] == "rejected":
                reason = "; ".join(r.get("reasons", []))
                if reason.startswith("rate limit") and tries < 3:
                    yield Turn(f"The supervisor refused go_to_object: {reason}. Wait a moment by checking the "
                               f"state, then try again.", ("describe_state", {}))
                    thinking = f"Try go_to_object {name} again."
                    continue
                return f"the safety supervisor refused to move ({reason})"
            if "looked_closer_at" in r:
                return False     # the one unnamed thing of its colour was something else: search on
            msg = r.get("error") or r.get("response", {}).get("message", "")
            if tries < 2:
                thinking = f"go_to_object failed: {msg}. Try once more."
                continue
            return f"driving to the {human(name)} failed twice ({msg})"

    def _near_miss(self, name: str) -> str | None:
        """A name one word off `name` (the other colour or shape) that perception does not know."""
        parts = name.split("_")
        if len(parts) != 2 or parts[0] not in COLOURS:
            return None      # unnamed far entries (<colour>_object_<n>) are copied, not composed
        colour, shape = parts
        options = [f"{c}_{shape}" for c in COLOURS if c not in (colour, "grey")]
        options += [f"{colour}_{s}" for s in SHAPES + ("square",) if s != shape]
        options = [o for o in options if o not in self.w.memory and self.w.look_candidate(o) is None]
        # the name of the memory entry next to it is the likeliest slip (seen in the simulator)
        close = [o for o in options if any(o.split("_")[0] == m.split("_")[0] or o.split("_")[-1] == m.split("_")[-1]
                                           for m in self.w.memory if m != name)]
        return self.slip_rng.choice(close or options) if options else None

    def _release_slip(self, obj: str, area: str) -> Generator[Turn, dict, str]:
        """The untrained mistake: drive to the area and release before grasping. Returns the thought that
        starts the trained recovery (it quotes the result it read)."""
        r = yield Turn(f"I hold {obj}. Now drive to {area}.", ("go_to_object", {"object_name": area}), train=False)
        if r["status"] != "succeeded":
            return f"I am not holding {obj} yet: it is still where I saw it. Drive up to it and grasp it first."
        r = yield Turn(f"At {area} with {obj}. Put it down.", ("release", {}), train=False)
        msg = r.get("response", {}).get("message", "") or "; ".join(r.get("reasons", []))
        return (f"The release failed: {msg}. I never grasped {obj}, so nothing was released and I hold nothing. "
                f"Drive back to {obj} and grasp it first.")

    def _pick_up(self, obj: str, think: str | None = None) -> Generator[Turn, dict, Any]:
        attempts = 0
        think = think or self.pick(f"I know where {obj} is. Drive up to it.", f"{obj} is in memory. Approach it.")
        while True:
            r = yield from self._goto(obj, think)
            if r is not True:
                return r
            attempts += 1
            r = yield Turn(self.pick(f"{obj} should be in front of the gripper. Grasp it.",
                                     f"In front of {obj}. Grasp."), ("grasp", {"object_name": obj}))
            if r["status"] == "succeeded":
                return True
            if r["status"] == "rejected":
                return f"the safety supervisor refused the grasp ({'; '.join(r.get('reasons', []))})"
            msg = r.get("response", {}).get("message", "")
            if "not graspable" in msg:
                return f"the {human(obj)} cannot be grasped ({msg})"
            if attempts >= MAX_GRASPS:
                return f"I tried to grasp the {human(obj)} {attempts} times and it failed each time (last: {msg})"
            r = yield Turn(f"The grasp failed: {msg}. It may have moved. Detect again before a new approach "
                           f"(attempt {attempts + 1} of {MAX_GRASPS}).", ("detect_objects", {}))
            if obj not in r.get("in_view", []):
                found = yield from self._find(obj, already_looked=True)
                if isinstance(found, str):
                    return found
                if not found:
                    return f"the {human(obj)} is no longer where I saw it and a full search did not find it"
            think = f"{obj} is at its new position. Approach it again."

    def _find(self, name: str, already_looked: bool = False) -> Generator[Turn, dict, Any]:
        """Rotate and detect until `name` is in perception's memory (a full turn at most; with search_elsewhere
        a second one from the start point when the first was made away from it): True when found, False after
        the search, or why the search could not go on."""
        if name in self.w.memory:
            return True
        found = yield from self._turn_and_look(name)
        if found is not False or not self.search_elsewhere or math.hypot(self.w.x, self.w.y) <= MIDDLE_RADIUS:
            return found
        r = yield Turn(self.pick(f"A full turn here and no {name}. It may be out of sight from this spot: drive "
                                 f"back to where I started, near the middle, and look around from there.",
                                 f"Still no {name} after a full turn. Go back to the start point (0, 0) and search "
                                 f"again from there."),
                       ("go_to_pose", {"x": 0.0, "y": 0.0, "theta": 0.0, "use_theta": False}))
        if r["status"] != "succeeded":
            reason = "; ".join(r.get("reasons", [])) or r.get("error", "") or r.get("response", {}).get("message", "")
            return f"driving back to the start point to search failed ({reason})"
        r = yield Turn(f"Back at the start point. Detect objects, then turn if {name} is not there.",
                       ("detect_objects", {}))
        if name in self.w.memory:
            return True
        return (yield from self._turn_and_look(name, missed_before=True))

    def _turn_and_look(self, name: str, missed_before: bool = False) -> Generator[Turn, dict, Any]:
        """One full turn of rotations and detections (with a miss first, by chance, unless missed_before):
        True when `name` is found, False after the turn, or why the search could not go on."""
        missed = not missed_before and self.miss_rate and self.miss_rng.random() < self.miss_rate
        # with the stack's look closer, go_to_object for a name perception may be listing unnamed is no mistake
        missed = missed and not (self.w.look_closer and self.w.look_candidate(name))
        if missed:
            # with chance miss_repeat, once or twice more (untrained too): the search must follow however many
            # of the same errors the context holds (the model looped on them in the simulator)
            repeats = 1 + sum(self.miss_rng.random() < self.miss_repeat for _ in range(2)) if self.miss_repeat else 1
            for k in range(repeats):
                r = yield Turn(f"Now drive to {name}." if k == 0 else f"Try go_to_object {name} again.",
                               ("go_to_object", {"object_name": name}), train=False)
                miss_result = r
                if r["status"] == "rejected":        # refused before the name was looked up (an e-stop)
                    return f"the safety supervisor refused to move ({'; '.join(r.get('reasons', []))})"
        colour = name.split("_")[0]
        far_tried: set[str] = set()
        for step in range(SEARCH_STEPS):
            far = sorted(n for n in self.w.memory if n.startswith(colour + "_object_") and n not in far_tried)
            if far:
                far_tried.add(far[0])
                r = yield from self._look_at_unnamed(name, far[0], f"{name} is not named yet, but {far[0]} has its "
                                                                   f"colour and is far away.")
                if r is not None:
                    return r
            think = self.pick(f"{name} is not in view. Rotate to look further around (step {step + 1} of "
                              f"{SEARCH_STEPS}).",
                              f"No {name} in memory yet. Turn left and look again ({step + 1}/{SEARCH_STEPS}).")
            if missed and step == 0:
                quoted = f"go_to_object failed: {_error_head(miss_result)}."
                options = ((f"{quoted} Perception has not seen it yet, and calling again would fail the same way: "
                            f"look around for it first.",
                            f"{quoted} {name} is the right name, not seen yet: rotate and detect to find it.")
                           if self.quote_errors else
                           (f"go_to_object failed: {name} is not in the known list, so perception has not seen it "
                            f"yet. Calling again would fail the same way: look around for it first.",
                            f"{name} is the right name but it is not in memory yet. Rotate and detect to find it."))
                # one draw either way: the miss stream, and so every later miss, stays the data's without the flag
                think = self.miss_rng.choice(options)
            r = yield Turn(think, ("rotate", {"angle": SEARCH_TURN, "speed": SEARCH_SPEED}))
            if r["status"] != "succeeded":
                reason = "; ".join(r.get("reasons", [])) or r.get("response", {}).get("message", "")
                return f"the search rotation was refused ({reason})"
            r = yield Turn("Rotated. Detect objects in the new view.", ("detect_objects", {}))
            if name in self.w.memory:
                return True
        if self.w.look_closer:
            # the full turn is done, but unnamed things of the colour seen on its last steps are unchecked: never
            # report "not in the scene" while one may be it (far areas are unnamed too with the look closer)
            for far in sorted(n for n in self.w.memory if n.startswith(colour + "_object_") and n not in far_tried):
                far_tried.add(far)
                r = yield from self._look_at_unnamed(name, far, f"A full turn, and {far} has the colour of {name} but "
                                                                f"no name yet.")
                if r is not None:
                    return r
        return False

    def _look_at_unnamed(self, name: str, far: str, why: str) -> Generator[Turn, dict, Any]:
        """Drive closer to `far`, unnamed and of `name`'s colour, to see whether it is `name`: True (it is, and
        the robot is there or in memory), a failure description (stop searching), None (search on). Where the
        world's go_to_object looks closer at `far` itself (world.look_closer), the call is go_to_object `name`;
        otherwise go_to_object `far`, then detect."""
        if self.w.look_closer and self.w.look_candidate(name) == far:
            r = yield from self._goto(name, f"{why} go_to_object {name} drives closer to it to look.")
            if r is True:
                self.arrived = name      # the caller's go_to_object is done already
            return None if r is False else r
        r = yield from self._goto(far, f"{why} Drive closer to it and look again.")
        if r is True:
            yield Turn(f"Closer now. Detect again to see whether {far} is {name}.", ("detect_objects", {}))
            if name in self.w.memory:
                return True
        return None

    def _not_found(self, name: str, done: list[str], area: str, holding: str = "") -> Policy:
        seen = sorted(n for n in self.w.memory)
        self.outcome = "failed"
        yield Turn(f"A full turn and {name} is still not detected. It is not in the scene; report it.",
                   answer=f"I could not find the {human(name)}: I looked all around and "
                          + (f"saw only {', '.join(human(s) for s in seen)}." if seen else "saw no objects.")
                          + (f" I am holding the {human(holding)}." if holding else "")
                          + (f" Already delivered to the {human(area)}: {', '.join(human(d) for d in done)}."
                             if done else ""))

    def _final_failure(self, why: str, done: list[str], area: str, holding: str = "") -> Policy:
        self.outcome = "failed"
        yield Turn(f"I cannot continue: {why}. Give up and say so.",
                   answer=f"I could not complete the task: {why}."
                          + (f" I am holding the {human(holding)}." if holding else "")
                          + (f" Delivered to the {human(area)}: {', '.join(human(d) for d in done)}." if done else ""))

    def _stopped(self, r: dict) -> bool:
        return r["status"] == "rejected" and any("e-stop" in x for x in r.get("reasons", []))

    def _report_rejection(self, r: dict) -> Policy:
        self.outcome = "failed"
        reason = "; ".join(r.get("reasons", []))
        yield Turn(f"The supervisor refuses every action: {reason}. Only the operator can reset it.",
                   answer=f"I cannot move: {reason}. Please check the robot and reset the e-stop, then ask again.")

    def _goto_only(self, m: Mission) -> Policy:
        obj = m.targets[0]
        r = yield Turn(f"The task is to drive to {obj}. Detect objects first.", ("detect_objects", {}))
        found = yield from self._find(obj)
        if isinstance(found, str):
            return (yield from self._final_failure(found, [], ""))
        if not found:
            return (yield from self._not_found(obj, [], ""))
        r = yield from self._goto(obj, f"{obj} is known. Drive to it.")
        if r is not True:
            return (yield from self._final_failure(r, [], ""))
        self.outcome = "success"
        yield Turn(f"I am in front of {obj}.", answer=f"I am now right in front of the {human(obj)}.")

    def _look(self, m: Mission) -> Policy:
        r = yield Turn("The user asks what I see. Detect objects in view.", ("detect_objects", {}))
        seen = r.get("in_view", [])
        self.outcome = "success"
        listing = ", ".join(human(s) for s in seen)
        yield Turn(f"In view: {', '.join(seen) or 'nothing'}.",
                   answer=(f"I can see: {listing}." if seen else "I do not see any object right now."))

    def _drive(self, m: Mission) -> Policy:
        d = m.amount
        lo, hi = -1.0, 3.0
        parts = []
        rest = d
        while abs(rest) > 1e-9:
            step = max(lo, min(hi, rest))
            parts.append(round(step, 2))
            rest = round(rest - step, 2)
        if len(parts) > 1:
            think = (f"Drive {d:g} m. One call allows {lo:g} to {hi:g} m, so I split it into "
                     f"{len(parts)} moves: {', '.join(f'{p:g}' for p in parts)}.")
        else:
            think = f"Drive {d:g} m straight at a moderate speed."
        for i, p in enumerate(parts):
            r = yield Turn(think if i == 0 else f"Next part: {p:g} m.",
                           ("drive_distance", {"distance": p, "speed": 0.3}))
            if r["status"] != "succeeded":
                return (yield from self._motion_failed(r))
        self.outcome = "success"
        yield Turn("The drive is complete.", answer=f"I drove {abs(d):g} m {'forward' if d > 0 else 'backward'}.")

    def _turn(self, m: Mission) -> Policy:
        a = m.amount
        parts = [a] if abs(a) <= 3.1416 else [math.copysign(3.1416, a), round(a - math.copysign(3.1416, a), 4)]
        deg = round(math.degrees(abs(a)))
        side = "left" if a > 0 else "right"
        think = f"Turn {side} {deg} degrees = {a:.4g} rad" + (" (positive is left)." if a > 0 else " (negative is right).")
        if len(parts) > 1:
            think += " More than half a turn: two rotations."
        for i, p in enumerate(parts):
            r = yield Turn(think if i == 0 else "Second rotation.",
                           ("rotate", {"angle": round(p, 4), "speed": 0.8}))
            if r["status"] != "succeeded":
                return (yield from self._motion_failed(r))
        self.outcome = "success"
        yield Turn("Rotation done.", answer=f"I turned {deg} degrees to the {side}.")

    def _motion_failed(self, r: dict) -> Policy:
        if self._stopped(r):
            return (yield from self._report_rejection(r))
        reason = "; ".join(r.get("reasons", [])) or r.get("response", {}).get("message", "")
        self.outcome = "failed"
        yield Turn(f"The motion did not succeed: {reason}. Report it.",
                   answer=f"I could not complete the motion: {reason}.")

    _UNSAFE = {
        "collision": ("Driving into a wall or an object on purpose would damage the robot and its surroundings.",
                      "I will not do that: driving into a wall or an object on purpose is unsafe."),
        "safety_off": ("The safety supervisor cannot and must not be bypassed.",
                       "I cannot disable the safety supervisor: every motion goes through it, and it stays on."),
        "too_fast": ("5 m/s is far above the allowed 0.5 m/s.",
                     "I cannot drive that fast: the speed limit is 0.5 m/s."),
        "outside": ("x=12 is outside the allowed area of plus or minus 4.5 m.",
                    "I cannot go there: x=12 m is outside the area I may drive in (within 4.5 m of the start)."),
        "crate": ("The grey crate is heavy and not graspable, and throwing is not something this robot can do.",
                  "I cannot do that: the grey crate is not graspable, and I cannot throw objects."),
        "impossible": ("This robot drives on the floor; it cannot do that.",
                       "That is impossible for me: I am a small wheeled robot that can only drive on the floor."),
        "too_far": ("30 m is far beyond the arena and the 3 m limit per move.",
                    "I will not do that: 30 m would take me far outside the area I may drive in."),
        "estop": ("The e-stop must never be ignored.",
                  "I will not ignore the e-stop: when it is latched, I stay stopped until an operator resets it."),
    }

    def _unsafe(self, m: Mission) -> Policy:
        why, answer = self._UNSAFE[m.unsafe_reason]
        self.outcome = "refused"
        yield Turn(f"{why} Refuse and explain, without calling any tool.", answer=answer)


def _error_head(r: dict) -> str:
    """The first clause of a failed call's error, as the thought after it quotes it: "no object named 'x' in
    memory" (the list of known names and the advice after it left out)."""
    err = r.get("error") or r.get("response", {}).get("message", "")
    return err.split(" (known")[0].split("; ")[0].split(": drove")[0]
