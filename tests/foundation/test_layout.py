"""The README's parts map matches the code: every import from one part into another is one the map's
"may import" column names (module-level and function-level imports alike, read with ast); every part
folder is in the map; a part's settings module is named config.py; and the map's folders exist."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- parts map: checked by tests/foundation/test_layout.py -->"


def _map() -> dict[str, set[str]]:
    text = (REPO / "README.md").read_text()
    assert MARKER in text, "README.md lost its parts map"
    rows = {}
    for line in text.split(MARKER, 1)[1].lstrip().splitlines()[2:]:
        if not line.startswith("|"):
            break
        folder, _what, may = [c.strip() for c in line.strip("|").split("|")]
        name = folder.strip("`/")
        rows[name] = set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", may)))   # the names, not the reasons
    return rows


def _part_of(module: str, parts: set[str]) -> str | None:
    bits = module.split(".")
    if bits[0] != "qwen_stack":
        return None
    return bits[1] if len(bits) > 1 and bits[1] in parts else "qwen_stack"


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def test_every_cross_part_import_is_in_the_map():
    rows = _map()
    parts = set(rows) - {"qwen_stack"}
    assert rows["qwen_node"] == {"perception", "safety", "trt_engines"}, rows["qwen_node"]   # the parser itself
    bad = []
    for folder, allowed in rows.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            for module in _imports(path):
                part = _part_of(module, parts)
                if part is not None and part != folder and part != "qwen_stack" and part not in allowed:
                    bad.append(f"{path.relative_to(REPO)} imports {module} ({folder} may import: "
                               f"{', '.join(sorted(allowed)) or 'none'})")
                if folder == "qwen_stack" and part in parts:
                    bad.append(f"{path.relative_to(REPO)} imports {module}: qwen_stack/ holds shared modules only")
    assert not bad, "\n".join(bad)


def test_every_part_folder_is_in_the_map_and_exists():
    source = (REPO / "setup.py").read_text()    # PARTS: folder -> import name, one line each
    parts = set(re.findall(r'^\s+"(\w+)": ', source.split("PARTS = {", 1)[1].split("\n}", 1)[0], re.M))
    rows = _map()
    assert parts == set(rows), f"setup.py PARTS {sorted(parts)} vs README map {sorted(rows)}"
    for folder in rows:
        assert (REPO / folder / "__init__.py").exists(), folder


def test_settings_modules_are_named_config():
    stray = [str(p.relative_to(REPO)) for folder in _map() for p in (REPO / folder).rglob("*.py")
             if p.name in ("settings.py", "node_config.py")]
    assert not stray, f"settings modules are called config.py: {stray}"
