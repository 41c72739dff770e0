"""The rest of runc's command line: help, --version, ps options, list's
owner, features, and one runtime-spec version everywhere."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root]

Bundle = Callable[..., Path]


def test_help_for_every_command(runlog: Any) -> None:
    from engine.cli import COMMANDS

    listed = runlog("help", check=True).stdout
    for name in COMMANDS:
        assert f"   {name} " in listed, name
        # `help CMD` and `CMD -h` say the same, as runc's do.
        shown = runlog("help", name, check=True).stdout
        assert shown.startswith(f"usage: runlog {name} ")
        assert runlog(name, "-h", check=True).stdout == shown
    unknown = runlog("help", "frobnicate")
    assert unknown.returncode == 1 and "No help topic for 'frobnicate'" in unknown.stderr


def test_one_spec_version_everywhere(runlog: Any, bundle: Bundle, tmp_path: Path) -> None:
    version = runlog("--version", check=True).stdout.splitlines()
    assert version[0] == "runlog version 0.1.0"
    assert version[1].startswith("commit: ")
    assert version[2].startswith("spec: ")
    assert any(line.startswith("libseccomp: 2.") for line in version)
    spec_version = version[2].removeprefix("spec: ")
    features = json.loads(runlog("features", check=True).stdout)
    assert features["ociVersionMax"] == spec_version
    annotations = features["annotations"]
    assert annotations["io.github.seccomp.libseccomp.version"].startswith("2.")
    assert annotations["org.runlog.version"] == "0.1.0"
    runlog("spec", "--bundle", str(tmp_path), check=True)
    assert json.loads((tmp_path / "config.json").read_text())["ociVersion"] == spec_version
    runlog("run", "-d", "s-ver", "-b", str(bundle(["sleep", "30"])), check=True)
    assert runlog.state("s-ver")["ociVersion"] == spec_version
    runlog("delete", "--force", "s-ver", check=True)


def test_ps_passes_options_to_ps_and_list_shows_the_owner(runlog: Any, bundle: Bundle) -> None:
    runlog("run", "-d", "s-ps", "-b", str(bundle(["sleep", "30"])), check=True)
    pid = runlog.state("s-ps")["pid"]
    # runc's way: what follows the id goes to ps, without "--".
    out = runlog("ps", "s-ps", "-o", "pid,comm", check=True).stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"]
    assert [line.split() for line in out[1:]] == [[str(pid), "sleep"]]
    # An option ps refuses: one line with ps's status and words, recorded.
    bad = runlog("ps", "s-ps", "-o", "nosuchfield")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert bad.stderr.startswith("runlog ps: exit status 1: ")
    assert len(bad.stderr.strip().splitlines()) == 1
    assert runlog.events("s-ps")[-1] == ("ps", None, "rejected")
    listed = json.loads(runlog("list", "--format", "json", check=True).stdout)
    assert [(c["id"], c["owner"]) for c in listed] == [("s-ps", "root")]
    table = runlog("list", check=True).stdout.splitlines()
    assert table[0].split()[-1] == "OWNER" and table[1].split()[-1] == "root"
    runlog("delete", "--force", "s-ps", check=True)


def test_ps_options_and_a_double_dash_as_runc(runlog: Any, runc: Any, bundle: Bundle) -> None:
    """runc 1.1.5 reads ps's own flags up to the id and hands all that
    follows to ps, a ``--`` too (procps refuses it: "garbage option"); a
    ``--`` before the id only ends the flags. Side by side, on containers
    of the same bundle: the same exit codes, the same lines kept."""
    runlog("run", "-d", "s-ours", "-b", str(bundle(["sleep", "30"])), check=True)
    runc("run", "-d", "-b", str(bundle(["sleep", "30"])), "s-runc")
    pids = {"s-ours": runlog.state("s-ours")["pid"], "s-runc": runc.state("s-runc")["pid"]}
    try:
        for line in (["ID", "-o", "pid"], ["--", "ID", "-o", "pid"], ["ID", "--", "-o", "pid"]):
            got = {}
            for cid, tool in (("s-ours", runlog), ("s-runc", runc)):
                done = tool("ps", *[cid if word == "ID" else word for word in line], check=False)
                got[cid] = (done.returncode, done.stdout.split(), done.stderr)
            ours, theirs = got["s-ours"], got["s-runc"]
            assert ours[0] == theirs[0], (line, got)
            if "--" in line[1:]:  # after the id: ps is given it, and refuses it
                assert ours[0] == 1 and ours[1] == [], (line, got)
                for said in (ours[2], theirs[2]):
                    assert "exit status 1: error: garbage option" in said, (line, got)
                assert len(ours[2].strip().splitlines()) == 1, (line, got)
            else:
                assert ours[0] == 0, (line, got)
                assert ours[1] == ["PID", str(pids["s-ours"])], (line, got)
                assert theirs[1] == ["PID", str(pids["s-runc"])], (line, got)
    finally:
        runc("delete", "--force", "s-runc", check=False)
        runlog("delete", "--force", "s-ours", check=True)


def _fields(doc: dict[str, Any], prefix: str = "") -> set[str]:
    """Every key of a features document, dotted (annotations' values aside)."""
    found = set()
    for key, value in doc.items():
        name = f"{prefix}.{key}" if prefix else key
        found.add(name)
        if isinstance(value, dict) and key != "annotations":
            found |= _fields(value, name)
    return found


def test_features_has_every_field_runc_prints(runlog: Any) -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (make deps installs it)")
    theirs = json.loads(
        subprocess.run(["runc", "features"], capture_output=True, text=True, check=True).stdout
    )
    ours = json.loads(runlog("features", check=True).stdout)
    assert _fields(theirs) <= _fields(ours), sorted(_fields(theirs) - _fields(ours))
    assert set(theirs["hooks"]) <= set(ours["hooks"])
    assert set(theirs["linux"]["namespaces"]) <= set(ours["linux"]["namespaces"])
