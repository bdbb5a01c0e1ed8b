"""Every ```python block of README.md runs as written, each in a fresh namespace.

The blocks are found when the tests are collected, so a block added to the README later is
tested without touching this file. Each runs in its own temporary working directory (blocks
may write, e.g. a small zoo under ``zoos/``).
"""

import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
# a fence line "```python" (nothing else on it), the code, then a closing "```" line
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    """``[(test id, code), ...]``; the id names the block's line and the heading above it."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    out = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        heads = re.findall(r"^#+\s*(.+?)\s*$", text[: m.start()], re.MULTILINE)
        head = re.sub(r"\W+", "-", heads[-1]).strip("-").lower() if heads else "top"
        out.append((f"L{line}-{head}", m.group(1)))
    return out


BLOCKS = _blocks()


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_readme_has_python_examples():
    # guards the extraction itself: a broken regex would otherwise make every test vanish
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("name,code", [pytest.param(i, c, id=i) for i, c in BLOCKS])
def test_readme_block_runs(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the file name in tracebacks points at the block: "README.md block L123-heading"
    exec(compile(code, f"README.md block {name}", "exec"), {"__name__": "__readme__"})
