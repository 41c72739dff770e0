"""The README and docs/ name only what the repository holds: every relative
link resolves (and its #anchor is a heading there), and every repository
path they mention exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A path below one of the repository's top-level directories, or a file at its root.
TOP = ("engine", "tests", "bench", "docs", "migrations", "scripts", ".ci")
PATH = re.compile(
    r"(?<![\w./~-])((?:" + "|".join(re.escape(t) for t in TOP) + r")/[\w./-]*[\w/]"
    r"|statemachine\.yaml|pyproject\.toml|Makefile)(?![\w/-])"
)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_name)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a URL, not a file of the repository
        file, _, anchor = target.partition("#")
        resolved = (doc.parent / file).resolve() if file else doc
        if not resolved.exists() or (
            anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved)
        ):
            broken.append(target)
    assert broken == [], f"{_name(doc)}: links to what is not there"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_name)
def test_every_repository_path_mentioned_exists(doc: Path) -> None:
    missing = sorted(
        {
            found
            for found in PATH.findall(doc.read_text())
            if not (REPO / found).exists() and not (doc.parent / found).exists()
        }
    )
    assert missing == [], f"{_name(doc)} names paths the repository does not hold"


def test_the_path_pattern_finds_what_it_should() -> None:
    text = "see `engine/quick.py`, docs/design.md, statemachine.yaml and engine/runtime/."
    found = ["engine/quick.py", "docs/design.md", "statemachine.yaml", "engine/runtime/"]
    assert PATH.findall(text) == found
    assert PATH.findall("/tmp/engine/x.py and ~/tests/y") == []


def test_the_documented_defaults_are_the_codes() -> None:
    from engine.layout import DEFAULT_ROOT
    from engine.settings import DEFAULT_DB

    readme = (REPO / "README.md").read_text()
    assert f"--root DIR` (default `{DEFAULT_ROOT}`)" in readme
    assert f"default `{DEFAULT_DB}`)" in readme
    for doc in DOCUMENTS:
        for found in re.findall(r"default `(/var/lib/runlog/[^`]*)`", doc.read_text()):
            assert found == DEFAULT_DB, _name(doc)
