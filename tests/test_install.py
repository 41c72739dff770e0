"""Installing runlog as a Python package, and with ``make install``: the
command is as fast a start as the stub ``make venv`` writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.machine.definition import default_path, load
from engine.machine.render import dot

REPO = Path(__file__).resolve().parent.parent


def test_machine_graph_as_dot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["machine", "graph", "--format", "dot"]) == 0
    out = capsys.readouterr().out
    assert out == dot(load(default_path())) + "\n"
    assert out.startswith("digraph machine {") and out.rstrip().endswith("}")
    assert '"running" -> "paused" [label="pause"];' in out
    assert '"running" -> "running" [label="kill, update, checkpoint, exec, exec_exit"];' in out
    assert '"deleted" [label="deleted", peripheries=2];' in out
    assert main(["machine", "graph", "--format", "svg"]) == 1


@pytest.mark.slow
def test_the_installed_command_starts_python_without_site(tmp_path: Path) -> None:
    """pip's command runs the venv's Python with -I -S (no site, no re)."""
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*build, "-q", "-w", str(dist), str(REPO)],
        check=True,
        capture_output=True,
    )
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    (wheel,) = dist.glob("runlog-*.whl")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-q", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True)
    command = venv / "bin" / "runlog"
    assert command.read_text().startswith("#!/bin/sh\n")
    out = subprocess.run(
        [str(command), "--version"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.startswith("runlog version ")
    # What the command's Python was started with, and what it loaded.
    probe = venv / "bin" / "probe"
    probe.write_text(
        command.read_text().replace(
            "from engine.quick import console\n\nconsole()\n",
            "import engine.quick\nprint(sys.flags.no_site, sys.flags.isolated, "
            "'site' in sys.modules, 're' in sys.modules, engine.quick.__file__)\n",
        )
    )
    probe.chmod(0o755)
    seen = subprocess.run([str(probe)], capture_output=True, text=True, check=True, cwd=tmp_path)
    no_site, isolated, site, re_loaded, where = seen.stdout.split()
    assert (no_site, isolated, site, re_loaded) == ("1", "1", "False", "False")
    assert where.startswith(str(venv))


@pytest.mark.slow
@pytest.mark.root
def test_make_install_puts_the_fast_stub_on_a_prefix(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("make install runs make deps (apt) as root")
    prefix = tmp_path / "prefix"
    subprocess.run(
        ["make", "-C", str(REPO), "install", f"PREFIX={prefix}"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    stub = prefix / "bin" / "runlog"
    text = stub.read_text()
    assert text.startswith(f"#!{prefix}/lib/runlog/bin/python -IS\n")
    assert str(REPO) not in text  # the installed package, not the checkout
    out = subprocess.run(
        [str(stub), "--version"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.startswith("runlog version ")
    spec = subprocess.run(
        [str(stub), "spec", "--bundle", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert spec.returncode == 0, spec.stderr
