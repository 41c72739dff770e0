"""One fact, one place: the tables other modules take a fact from are the
one definition, and the tables keyed by those facts cover them exactly."""

from __future__ import annotations

from pathlib import Path

from engine.actions import catalog
from engine.actions.hook import STATUS_SEEN
from engine.linux import syscalls
from engine.oci import names
from engine.oci.model import HOOK_ATTRIBUTES
from engine.runtime.monitor.hooks import IN_CONTAINER

ENGINE = Path(__file__).resolve().parent.parent / "engine"


def _files_saying(text: str) -> list[str]:
    return sorted(
        str(p.relative_to(ENGINE.parent)) for p in ENGINE.rglob("*.py") if text in p.read_text()
    )


def test_the_clone_flags_are_the_runtime_specs_namespace_table() -> None:
    assert syscalls.CLONE_FLAGS is names.NAMESPACES
    assert set(syscalls.NS_FILES) == set(names.NAMESPACES)


def test_every_table_of_hook_points_covers_the_spec_list() -> None:
    assert catalog.HOOK_POINTS is names.HOOK_POINTS
    assert list(STATUS_SEEN) == list(names.HOOK_POINTS)
    assert list(HOOK_ATTRIBUTES) == list(names.HOOK_POINTS)
    assert set(IN_CONTAINER) <= set(names.HOOK_POINTS)


def test_the_default_log_path_is_written_once() -> None:
    from engine.settings import DEFAULT_DB

    assert _files_saying(f'"{DEFAULT_DB}"') == ["engine/settings.py"]


def test_the_site_config_path_the_settings_check_is_siteconfigs() -> None:
    from engine import settings, siteconfig

    # settings checks for the file without importing siteconfig (hot path)
    assert settings._CONFIG == siteconfig.CONFIG


def test_the_machine_digest_is_the_one_function_every_writer_uses() -> None:
    from engine.machine.definition import default_path, digest_of, load
    from engine.runtime.shared.record import machine_digest
    from engine.settings import Settings

    path = default_path()
    expected = digest_of(Path(path).read_bytes())
    assert load(path).digest == expected
    assert machine_digest(Settings(machine=path)) == expected
