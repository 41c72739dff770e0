"""The validated-definition cache: same result as parsing, no YAML on a hit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import MachineError
from engine.machine.definition import default_path, load


def test_cached_load_equals_a_fresh_parse(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fresh = load(default_path())
    first = load(default_path(), cache=str(cache))
    second = load(default_path(), cache=str(cache))
    assert first == fresh and second == fresh
    assert second.text == fresh.text
    assert [a.label() for t in second.transitions for a in t.actions] == [
        a.label() for t in fresh.transitions for a in t.actions
    ]
    assert [p.name for p in cache.iterdir()] == [f"{fresh.digest}.marshal"]


def test_a_cache_hit_does_not_import_yaml(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load(default_path(), cache=str(cache))
    script = (
        "import sys\n"
        "from engine.machine.definition import default_path, load\n"
        f"d = load(default_path(), cache={str(cache)!r})\n"
        "print('yaml' in sys.modules, len(d.transitions))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", str(len(load(default_path()).transitions))]


def test_a_changed_file_is_parsed_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    site = tmp_path / "site.yaml"
    site.write_text(Path(default_path()).read_text())
    load(site, cache=str(cache))
    site.write_text(Path(default_path()).read_text().replace("cgroup.thaw", "cgroup.melt"))
    # The loader's validation runs again: no stale cache hit.
    with pytest.raises(MachineError, match=r"cgroup\.melt"):
        load(site, cache=str(cache))


def test_a_corrupt_cache_entry_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    good = load(default_path(), cache=str(cache))
    (cache / f"{good.digest}.marshal").write_bytes(b"not marshal data")
    assert load(default_path(), cache=str(cache)) == good
