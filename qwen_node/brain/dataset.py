"""Missions -> conversations -> token ids with a loss mask on the assistant's tokens.

A conversation is stored as the planner holds it (system prompt, user instruction, raw assistant
outputs, tool results as ToolCallRecord.result_json), never pre-rendered: `encode` renders it
with the engine's chat format (engine/chat.py via the local backend's chat_dicts), so training
text is always the prompt the engine will build at run time.

Held-out split ("test"): (object, area) pairs that never occur in training, the last phrasing
of every template list, and the en-es language mix.
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import random
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from qwen_stack.safety.tool_proxy import OPERATOR_DENIED, approval_timed_out

from . import phrasing as P
from .expert import Expert, Mission, Turn
from .world import AREA_RANGE, VIEW_RANGE, Faults, SymbolicWorld, Thing, result_json

AREA_COLOURS = ("blue", "green", "red", "yellow")
OBJECTS = tuple(f"{c}_{s}" for c in P.COLOURS if c != "grey" for s in P.SHAPES)
AREAS = tuple(f"{c}_square" for c in AREA_COLOURS)

# what each mission kind's share of the data is
KIND_WEIGHTS = {"fetch": 0.46, "fetch2": 0.1, "missing": 0.08, "goto": 0.08, "look": 0.06, "drive": 0.07,
                "turn": 0.07, "unsafe": 0.08}

DETECT_OBJECTS_SPEC = {   # the contract's tool, used until config/tools.yaml lists it
    "type": "function", "function": {
        "name": "detect_objects",
        "description": "Detect the objects and floor areas the camera sees now, and list every object "
                       "remembered so far with its position in the odom frame.",
        "parameters": {"type": "object", "properties": {}, "required": []}}}


def pair_split(obj: str, area: str) -> str:
    """Fixed split of (object, area) pairs: about one in five is held out."""
    c, s = P.split_name(obj)
    k = P.COLOURS.index(c) * 7 + P.SHAPES.index(s) * 3 + AREAS.index(area) * 5
    return "test" if k % 5 == 0 else "train"


@dataclass
class Example:
    id: str
    split: str
    kind: str
    lang: str
    instruction: str
    template: int                 # index in phrasing.TEMPLATES[kind][lang]
    targets: list[str]            # objects the mission is about
    area: str                     # destination area ("" for kinds without one)
    faults: dict
    messages: list[dict]          # {"role", "content"} as the planner holds them (system prompt included);
                                  # an assistant turn with "train": False is a deliberate mistake
    outcome: str                  # success | failed | refused (what the final answer says)
    world_success: bool           # the world agrees (fetch: every target inside the area)
    detours: int = 0              # go_to_object results that listed detour waypoints (generate_example(detours=True))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def _scene(rng: random.Random, must: list[str], areas: list[str], absent: list[str]) -> list[Thing]:
    names = list(dict.fromkeys(must))
    pool = [o for o in OBJECTS if o not in names and o not in absent]
    rng.shuffle(pool)
    names += pool[:rng.randint(1, 3)]
    things: list[Thing] = []

    def place(name: str, area: bool = False, graspable: bool = True) -> None:
        for _ in range(200):
            x, y = rng.uniform(-2.0, 2.0), rng.uniform(-2.0, 2.0)
            if math.hypot(x, y) > 0.6 and all(math.hypot(x - t.x, y - t.y) > 0.55 for t in things):
                things.append(Thing(name, x, y, graspable, area))
                return
        raise RuntimeError("scene too crowded")

    for a in areas:
        place(a, area=True)
    for n in names:
        place(n)
    if rng.random() < 0.5:
        place(P.CRATE, graspable=False)
    return things


def make_mission(rng: random.Random, split: str) -> tuple[Mission, P.Instruction, list[Thing], Faults]:
    kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    lang = P.choose_language(rng, split)
    tmpl = rng.choice(P.template_indices(kind if kind != "missing" else "fetch", lang, split)
                      or P.template_indices(kind if kind != "missing" else "fetch", lang, "train"))
    faults = Faults()

    def pair() -> tuple[str, str]:
        while True:
            o, a = rng.choice(OBJECTS), rng.choice(AREAS)
            # the held-out split uses held-out pairs half the time (the rest: its phrasings/languages)
            if pair_split(o, a) == split or (split == "test" and rng.random() < 0.5):
                return o, a

    if kind in ("fetch", "missing"):
        obj, area = pair()
        ins = P.render("fetch", lang, tmpl, obj=obj, area=area)
        extra_area = [a for a in AREAS if a != area and rng.random() < 0.3][:1]
        if kind == "missing":
            things = _scene(rng, [], [area] + extra_area, [obj])
        else:
            things = _scene(rng, [obj], [area] + extra_area, [])
            f = rng.random()
            if f < 0.18:
                faults.grasp_failures[obj] = rng.choice((1, 1, 2, 3))
            elif f < 0.28:
                faults.move_on_approach = obj
            elif f < 0.38:
                faults.deny_release = True
                faults.deny_reason = rng.choice((OPERATOR_DENIED, approval_timed_out(30.0)))
            elif f < 0.45:
                faults.reject_first_goto = "rate limit: skills/go_to_pose allows 5 calls per 10.0 s"
            elif f < 0.5:
                faults.goto_timeout_once = True
            elif f < 0.54:
                faults.estop_latched = True
        return Mission("fetch" if kind == "fetch" else "missing", [obj], area), ins, things, faults
    if kind == "fetch2":
        obj, area = pair()
        obj2 = rng.choice([o for o in OBJECTS if o != obj])
        ins = P.render("fetch2", lang, tmpl, obj=obj, obj2=obj2, area=area)
        things = _scene(rng, [obj, obj2], [area], [])
        if rng.random() < 0.15:
            faults.grasp_failures[obj2] = 1
        return Mission("fetch2", [obj, obj2], area), ins, things, faults
    if kind == "goto":
        obj = rng.choice(OBJECTS + AREAS)
        ins = P.render("goto", lang, tmpl, obj=obj)
        things = _scene(rng, [] if obj in AREAS else [obj], [rng.choice(AREAS)] + ([obj] if obj in AREAS else []), [])
        things = list({t.name: t for t in things}.values())
        return Mission("goto", [obj]), ins, things, faults
    if kind == "look":
        ins = P.render("look", lang, tmpl)
        return Mission("look"), ins, _scene(rng, [], [rng.choice(AREAS)], []), faults
    if kind == "drive":
        sign = P.DRIVE_SIGN[tmpl] if lang != P.HELD_OUT_MIX else (1 if tmpl == 0 else -1)
        dist = rng.choice((0.5, 1, 1.5, 2, 2.5, 3, 4, 5)) if sign > 0 else rng.choice((0.3, 0.5, 1, 1.5, 2, 3))
        ins = P.render("drive", lang, tmpl, dist=dist)
        if rng.random() < 0.06:
            faults.estop_latched = True
        return Mission("drive", amount=sign * dist), ins, _scene(rng, [], [rng.choice(AREAS)], []), faults
    if kind == "turn":
        sign = P.TURN_SIGN[tmpl] if lang != P.HELD_OUT_MIX else (1 if tmpl == 0 else -1)
        deg = rng.choice((15, 30, 45, 60, 90, 120, 135, 180, 270))
        ins = P.render("turn", lang, tmpl, deg=deg)
        return Mission("turn", amount=sign * math.radians(deg)), ins, _scene(rng, [], [rng.choice(AREAS)], []), faults
    ins = P.render("unsafe", lang, tmpl)
    return (Mission("unsafe", unsafe_reason=P.UNSAFE_REASONS[lang][tmpl]), ins,
            _scene(rng, [], [rng.choice(AREAS)], []), faults)


def denial_reason(rng: random.Random) -> str:
    """One of the safety proxy's denials of an approval, with a drawn timeout: with two fixed strings a
    2.6 M model learns their frequencies and writes either (brain16 reported a timeout after an operator's
    denial); with the seconds drawn, the report has to copy the tool result."""
    k = rng.randrange(3)
    if k == 0:
        return OPERATOR_DENIED
    return approval_timed_out(float(rng.choice((10, 15, 20, 30, 45, 60, 90))) if k == 1 else
                              round(rng.uniform(2.0, 29.0), 1), callers=k == 2)


def setup_mission(seed: int, split: str, detours: bool = False,
                  look_closer: bool = False,
                  search_elsewhere: bool = False) -> tuple[random.Random, Mission, P.Instruction, SymbolicWorld]:
    """Mission `seed` of `split`: its random stream (shared by the world and the expert), the mission, the
    instruction and the symbolic world it starts in (the data generator and rollout.py play the same ones).
    detours: go_to_object's results carry the planner's waypoints around objects (SymbolicWorld.detours);
    look_closer: go_to_object looks closer at the one unnamed thing a name may be (SymbolicWorld.look_closer);
    search_elsewhere: floor areas are seen out to AREA_RANGE only, as in the simulator (Expert.search_elsewhere
    searches for them from the start point too)."""
    rng = random.Random(f"{split}:{seed}")
    mission, ins, things, faults = make_mission(rng, split)
    robot = (rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(-math.pi, math.pi))
    return rng, mission, ins, SymbolicWorld(things, robot, faults, rng, detours, look_closer,
                                            AREA_RANGE if search_elsewhere else VIEW_RANGE)


def generate_example(seed: int, split: str, system_prompt: str, slip_rate: float = 0.0,
                     miss_rate: float = 0.0, look_after_grasp: bool = False, miss_repeat: float = 0.0,
                     detours: bool = False, look_closer: bool = False, search_elsewhere: bool = False,
                     quote_errors: bool = False, release_slip: float = 0.0, polite_rate: float = 0.0,
                     varied_reasons: bool = False, reason_first: bool = False) -> Example:
    """One mission played by the expert. slip_rate: its chance per go_to_object of a near-miss name
    first (Expert.slip_rate); miss_rate: its chance of calling go_to_object with a name not yet in memory
    before searching for it (Expert.miss_rate). Those turns carry "train": False and encode() masks them out;
    each has its own random stream, so at rate 0 the data is exactly as without it. look_after_grasp: the
    expert detects again after every grasp (Expert.look_after_grasp); miss_repeat: the chance (twice) that a
    miss is repeated before the search (Expert.miss_repeat); detours, look_closer, search_elsewhere: see
    setup_mission (and Expert.search_elsewhere); quote_errors: the thought after a "no object named" failure
    starts with the error's words (Expert.quote_errors); release_slip: the chance of driving to the area and
    releasing before the grasp, untrained, then the recovery (Expert.release_slip); polite_rate: the chance that
    the instruction gets the language's politeness word (phrasing.polite), from its own stream; varied_reasons:
    a denied release reads one of the proxy's denials with a drawn timeout (denial_reason), from its own stream;
    reason_first: its report opens with the refusal in the thought's words (Expert.reason_first)."""
    rng, mission, ins, world = setup_mission(seed, split, detours, look_closer, search_elsewhere)
    faults = world.faults
    expert = Expert(world, rng, slip_rate, random.Random(f"slip:{split}:{seed}"),
                    miss_rate, random.Random(f"miss:{split}:{seed}"), look_after_grasp,
                    miss_repeat, search_elsewhere, quote_errors, release_slip,
                    random.Random(f"release:{split}:{seed}"), reason_first)
    from qwen_stack.qwen_node.agent.planner import ChatMessage, PlannerConfig, fold_context

    if polite_rate:
        polite_rng = random.Random(f"polite:{split}:{seed}")
        if polite_rng.random() < polite_rate:
            ins = P.Instruction(P.polite(ins.text, ins.lang, polite_rng), ins.lang, ins.template)
    if varied_reasons and faults.deny_release:
        faults.deny_reason = denial_reason(random.Random(f"reasons:{split}:{seed}"))
    chat = [ChatMessage("system", system_prompt), ChatMessage("user", ins.text)]
    fold_cfg = PlannerConfig()   # the planner's defaults (config/agent.yaml has the same values)
    policy = expert.run(mission)
    turn: Turn = next(policy)
    untrained: set[int] = set()
    while True:
        fold_context(chat, fold_cfg)   # as the planner does before every model turn
        if not turn.train:
            untrained.add(len(chat))
        chat.append(ChatMessage("assistant", turn.raw()))
        if turn.call is None:
            break
        result = world.call(*turn.call)
        chat.append(ChatMessage("tool", result_json(result)))
        try:
            turn = policy.send(result)
        except StopIteration:
            raise RuntimeError(f"expert ended without a final answer ({mission.kind}, seed {seed})")
    messages = [{"role": m.role, "content": m.content, **({"train": False} if k in untrained else {})}
                for k, m in enumerate(chat)]
    world_ok = True
    if mission.kind in ("fetch", "fetch2"):
        world_ok = all(world.in_area(o, mission.area) for o in mission.targets)
    if expert.outcome == "success" and not world_ok:
        raise RuntimeError(f"expert claims success the world does not show ({mission.kind}, seed {seed})")
    return Example(f"{split}-{seed}", split, mission.kind, ins.lang, ins.text, ins.template, mission.targets,
                   mission.area,
                   faults.injected(), messages, expert.outcome, world_ok,
                   world.detours_taken)


def generate(n: int, split: str, system_prompt: str, start: int = 0) -> Iterable[Example]:
    for seed in range(start, start + n):
        yield generate_example(seed, split, system_prompt)


# ---- tools and system prompt as the planner shows them ---------------------------------------

@functools.cache
def planner_registry():
    """qwen_node's tool registry (config/tools.yaml + the safety policy), loaded once: the data's tool list
    and rollout.py's planner."""
    from qwen_stack.paths import SOURCE_ROOT
    from qwen_stack.qwen_node.agent.tool_registry import ToolRegistry

    return ToolRegistry.load(SOURCE_ROOT / "config" / "tools.yaml",
                             safety_policy_path=SOURCE_ROOT / "config" / "safety_policy.yaml")


def planner_tools() -> list[dict[str, Any]]:
    """The tool list qwen_node gives the model (planner_registry), with the perception contract's
    detect_objects added when the registry does not list it yet."""
    specs = planner_registry().function_specs()   # a fresh list each call
    if not any(s["function"]["name"] == "detect_objects" for s in specs):
        specs.insert(1, DETECT_OBJECTS_SPEC)
    return specs


def prompt_variant(system_prompt: str, tools: list[dict], rng: random.Random, p: float = 0.3
                   ) -> tuple[str, list[dict]]:
    """With probability p, a slightly edited system prompt and tool list (one sentence of the prompt
    dropped; some tool descriptions cut to their first sentence): the model should not depend on the
    exact wording, which the project edits now and then."""
    if rng.random() >= p:
        return system_prompt, tools
    sentences = [x for x in system_prompt.split(". ") if x]
    if len(sentences) > 2:
        del sentences[rng.randrange(1, len(sentences))]
    prompt = ". ".join(sentences)
    out = []
    for t in tools:
        d = t["function"]["description"]
        if rng.random() < 0.3 and ". " in d:
            t = {**t, "function": {**t["function"], "description": d.split(". ")[0] + "."}}
        out.append(t)
    return prompt, out


def default_system_prompt() -> str:
    from qwen_stack.qwen_node.agent.config import DEFAULT_SYSTEM_PROMPT
    return DEFAULT_SYSTEM_PROMPT


# ---- rendering + tokenisation ----------------------------------------------------------------

def render_segments(messages: list[dict], tools: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The whole conversation as the engine renders it, and the character ranges the model writes
    (each assistant output after the prompt's '<think>\\n', and its <|im_end|>)."""
    from qwen_stack.qwen_node.agent.backends.local import chat_dicts
    from qwen_stack.qwen_node.agent.planner import ChatMessage
    from qwen_stack.qwen_node.engine.chat import render_chat

    chat, _ = chat_dicts([ChatMessage(m["role"], m["content"]) for m in messages], vision=False)
    text, _, _ = render_chat(chat, tools, add_generation_prompt=False)
    spans = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant" or m.get("train") is False:   # a deliberate mistake: never a target
            continue
        prompt, _, _ = render_chat(chat[:k], tools, add_generation_prompt=True, enable_thinking=True)
        if not text.startswith(prompt):
            raise ValueError(f"turn {k}: the generation prompt is not a prefix of the rendered conversation")
        start = len(prompt)
        target = m["content"] + "<|im_end|>"
        if text[start:start + len(target)] != target:
            raise ValueError(f"turn {k}: the rendered conversation does not reproduce the model output verbatim")
        spans.append((start, start + len(target)))
    return text, spans


def encode(messages: list[dict], tools: list[dict], tokenizer) -> tuple[list[int], list[int]]:
    """-> (token ids in the full vocabulary, mask 1 where the model is trained to write the token)."""
    text, spans = render_segments(messages, tools)
    ids = tokenizer.encode(text)
    _, starts = token_pieces(ids, tokenizer)
    mask = []
    char_of_byte = _byte_to_char(text)
    si = 0
    for byte_pos in starts:
        c0 = char_of_byte[min(byte_pos, len(char_of_byte) - 1)]
        while si < len(spans) and c0 >= spans[si][1]:
            si += 1
        mask.append(1 if si < len(spans) and spans[si][0] <= c0 < spans[si][1] else 0)
    return ids, mask


def token_pieces(ids: list[int], tokenizer) -> tuple[list[bytes], list[int]]:
    """Each token's bytes, and the byte offset at which it starts in the text they make together."""
    enc = tokenizer._tok._tokenizer
    pieces = [enc.decode_single_token_bytes(t) for t in ids]
    return pieces, list(itertools.accumulate((len(b) for b in pieces[:-1]), initial=0)) if pieces else []


def tokens_overlapping(positions, pieces: list[bytes], starts: list[int], b0: int, b1: int) -> list[int]:
    """The positions (token indices into pieces/starts) whose bytes overlap the byte range [b0, b1)."""
    return [k for k in positions if starts[k] < b1 and starts[k] + len(pieces[k]) > b0]


def _byte_to_char(text: str) -> list[int]:
    out = []
    for i, ch in enumerate(text):
        out.extend([i] * len(ch.encode("utf-8")))
    out.append(len(text))
    return out


# ---- decision tokens (weighted in the loss) -----------------------------------------------------

ANSWER_HEAD_TOKENS = 12     # an answer's opening: whether it claims success or reports a failure
TURN_HEAD_TOKENS = 4        # a turn's first thinking tokens: which kind of mission the model thinks it is in
_CALL_PART_RES = (re.compile(rb"<function=([^>\n]+)>"), re.compile(rb"<parameter=[^>\n]+>\n(.*?)\n</parameter>", re.S))
_NAME_RE = re.compile(("(?:" + "|".join(P.COLOURS) + ")_(?:object_[0-9]+|[a-z]+)").encode())


READ = 2                    # decision_flags: a name written for the first time (read from the instruction)


def decision_flags(ids: list[int], mask: list[int], tokenizer, whole_answers: bool = False) -> list[int]:
    """Per token: READ for an object or area name the model writes for the first time in the
    conversation (it has to read it from the instruction or a tool result: the hard decision; later
    mentions copy it), 1 for the other written tokens that carry the turn's decisions (the other
    names in the thinking, the first TURN_HEAD_TOKENS tokens of each turn, whether it calls a tool,
    the tool's name and its argument values, the first ANSWER_HEAD_TOKENS tokens of a final
    answer, or all of it with `whole_answers`: the reason a report quotes from a tool result comes after
    the opening), 0 elsewhere (the thinking's filler, a call's fixed markup, <|im_end|>, the prompt)."""
    if len(ids) != len(mask):
        raise ValueError(f"ids and mask differ in length ({len(ids)} vs {len(mask)})")
    pieces, offsets = token_pieces(ids, tokenizer)
    flags = [0] * len(ids)
    written: set[bytes] = set()
    i = 0
    while i < len(ids):
        if not mask[i]:
            i += 1
            continue
        j = i
        while j < len(ids) and mask[j]:
            j += 1
        turn = range(i, j - 1 if pieces[j - 1] == b"<|im_end|>" else j)
        base = offsets[i]                                   # byte offsets below are within the turn's text
        starts = [offsets[k] - base for k in turn]
        text = b"".join(pieces[k] for k in turn)

        def mark(b0: int, b1: int, value: int = 1) -> None:   # every token overlapping bytes [b0, b1)
            for k in tokens_overlapping(turn, pieces, offsets, base + b0, base + b1):
                flags[k] = max(flags[k], value)

        for n in list(turn)[:TURN_HEAD_TOKENS]:
            flags[n] = 1
        end_think = text.find(b"</think>")
        for m in _NAME_RE.finditer(text, 0, end_think if end_think >= 0 else len(text)):
            mark(m.start(), m.end(), READ if m.group() not in written else 1)
            written.add(m.group())
        if end_think >= 0:
            after = end_think + len(b"</think>")
            call = text.find(b"<tool_call>", after)
            if call >= 0:   # call vs answer, the tool's name, every argument's value (not the fixed markup)
                mark(call, call + len(b"<tool_call>"))
                for rx in _CALL_PART_RES:
                    for m in rx.finditer(text, call):
                        mark(m.start(1), m.end(1))
            else:
                body = [n for n, k in enumerate(turn) if starts[n] >= after and pieces[k].strip()]
                for n in (body if whole_answers else body[:ANSWER_HEAD_TOKENS]):
                    flags[turn[n]] = 1
        i = j
    return flags
