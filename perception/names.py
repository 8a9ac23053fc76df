"""How perception names what it remembers (pure; the memory writes these names, the agent reads them).

`<colour>_<shape>` once the shape vote is sure (`<colour>_<shape>_<n>` for a second one of a kind),
`<colour>_object_<n>` until then: far away or half hidden an object's shape is not known yet.
Flat areas painted on the floor have the shape `square`.
"""
from __future__ import annotations

AREA_SHAPE = "square"
SHAPES = ("cube", "ball", "cylinder", "crate", AREA_SHAPE)


def unnamed(colour: str, n: int) -> str:
    return f"{colour}_object_{n}"


def is_unnamed(name: str) -> bool:
    """`name` is one given for want of a shape (`<colour>_object_<n>`)."""
    parts = name.split("_")
    return len(parts) >= 3 and parts[-2] == "object" and parts[-1].isdigit()


def named_parts(name: str) -> tuple[str, str] | None:
    """(colour, shape) of a plain `<colour>_<shape>` name (no number), else None."""
    colour, _, shape = name.rpartition("_")
    return (colour, shape) if colour and shape in SHAPES else None
