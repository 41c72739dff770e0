"""The code file of create's imports (engine.codecache): what it serves,
what it leaves to the usual import, and the stub that installs it."""

from __future__ import annotations

import ast
import importlib.util
import marshal
import os
import subprocess
import sys
from pathlib import Path

from engine import codecache, entry

REPO = Path(__file__).resolve().parent.parent
SITE = [p for p in sys.path if p.endswith("site-packages")]


def _python(code: str, *path: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as the entry stub runs: -I -S, the paths put in by hand."""
    paths = [*path, str(REPO), *SITE]
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[0:0] = {paths!r}; {code}"],
        capture_output=True,
        text=True,
        check=False,
    )


def _package(root: Path, value: str) -> None:
    (root / "pkg").mkdir(exist_ok=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text(f"VALUE = {value}\n")


def _build(root: Path, names: str) -> Path:
    code_file = root / "code"
    out = _python(
        f"import sys, {names}; from engine import codecache; "
        f"print(codecache.build({str(code_file)!r}, list(sys.modules.values())))",
        str(root),
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 0
    return code_file


def _with_code_file(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with pkg.mod under ``root`` and ``f``, the code file
    built from it, installed."""
    _package(root, "1")
    code_file = _build(root, "pkg.mod, engine.machine.runtime")
    return _python(
        f"from engine import codecache; f = codecache.install({str(code_file)!r}); {code}",
        str(root),
    )


def test_modules_come_from_the_code_file_as_the_usual_import_gives_them(tmp_path: Path) -> None:
    out = _with_code_file(
        tmp_path,
        "import pkg.mod, engine.machine.runtime as rt; "
        "from engine.machine.definition import load, resolve; "
        "from engine.actions.registry import REGISTRY; "
        "lc = rt.Lifecycle(load(resolve(None, {})), REGISTRY); "
        "print(type(pkg.mod.__loader__).__name__, type(rt.__spec__.loader).__name__); "
        "print(pkg.mod.VALUE, pkg.mod.__file__, pkg.__path__); "
        "print(lc.may('created', 'start'))",
    )
    assert out.returncode == 0, out.stderr
    loaders, values, may = out.stdout.splitlines()
    assert loaders == "CodeFile CodeFile"
    assert values == f"1 {tmp_path}/pkg/mod.py {[str(tmp_path / 'pkg')]}"
    assert may == "True"


def test_released_the_file_serves_nothing_more(tmp_path: Path) -> None:
    out = _with_code_file(
        tmp_path,
        "import pkg, posix; fd = f._fd; codecache.release(); "
        "exec('try: posix.fstat(fd); is_open = True\\nexcept OSError: is_open = False'); "
        "import pkg.mod; "
        "print(f in sys.meta_path, is_open, "
        "type(pkg.__loader__).__name__, type(pkg.mod.__loader__).__name__)",
    )
    assert (out.returncode, out.stdout) == (
        0,
        "False False CodeFile SourceFileLoader\n",
    ), out.stderr


def test_a_source_changed_since_the_build_is_imported_as_usual(tmp_path: Path) -> None:
    out = _with_code_file(
        tmp_path,
        # Another size and mtime than the file was built from.
        f"open({str(tmp_path / 'pkg' / 'mod.py')!r}, 'w').write('VALUE = 22\\n'); "
        "import pkg, pkg.mod; "
        "print(pkg.mod.VALUE, type(pkg.mod.__loader__).__name__, type(pkg.__loader__).__name__)",
    )
    assert (out.returncode, out.stdout) == (0, "22 SourceFileLoader CodeFile\n"), out.stderr


def test_a_file_of_another_python_or_none_changes_nothing(tmp_path: Path) -> None:
    other, garbage = tmp_path / "other", tmp_path / "garbage"
    header = marshal.dumps({"magic": b"\x00\x00\r\n", "modules": {}})
    other.write_bytes(len(header).to_bytes(8, "little") + header)
    garbage.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00\xff\xff")
    # A file cut short: its header names code past its end.
    short = tmp_path / "short"
    entry_ = (0, 100, "/nowhere.py", 0, 0, False)
    head = marshal.dumps({"magic": importlib.util.MAGIC_NUMBER, "modules": {"m": entry_}})
    short.write_bytes(len(head).to_bytes(8, "little") + head + b"\x00" * 99)
    meta_path = list(sys.meta_path)
    fds = sorted(os.listdir("/proc/self/fd"))
    for path in (other, garbage, short, tmp_path / "missing"):
        assert codecache.install(str(path)) is None
    assert sys.meta_path == meta_path
    assert sorted(os.listdir("/proc/self/fd")) == fds  # none left open
    # The same file with this Python's magic is taken.
    header = marshal.dumps({"magic": importlib.util.MAGIC_NUMBER, "modules": {}})
    other.write_bytes(len(header).to_bytes(8, "little") + header)
    finder = codecache.install(str(other))
    try:
        assert finder is not None and sys.meta_path[0] is finder
    finally:
        sys.meta_path.remove(finder)  # type: ignore[arg-type]


def test_the_stub_installs_the_file_for_create_and_run_only(tmp_path: Path) -> None:
    stub = tmp_path / "runlog"
    entry.install(str(stub))
    text = stub.read_text()
    code_file = entry.code_file(str(stub))
    assert os.path.isabs(code_file) and Path(code_file).stat().st_size > 0
    assert "if any(word in sys.argv for word in ('create', 'exec', 'run')):" in text
    assert f"install({code_file!r})" in text
    # It holds what create's processes load: the monitor and transitions.
    out = _python(
        f"from engine import codecache; f = codecache.CodeFile({code_file!r}); "
        "print(all(n in f._entries for n in "
        "('engine.quick', 'engine.runtime.monitor.main', 'transitions.core', 'warnings')))"
    )
    assert out.stdout == "True\n", out.stderr
    version = subprocess.run([str(stub), "--version"], capture_output=True, text=True, check=False)
    assert (version.returncode, version.stdout.split()[:2]) == (0, ["runlog", "version"])


def test_what_the_monitor_loads_to_create_comes_from_the_file(tmp_path: Path) -> None:
    # Every Python module the monitor imports before it reports, the event
    # store it opens included, is served by the code file: none is searched
    # for and read from a .pyc on create's way.
    stub = tmp_path / "runlog"
    entry.install(str(stub))
    db = tmp_path / "events.db"
    out = _python(
        "import posix, engine.codecache as c; "
        f"c.install({entry.code_file(str(stub))!r}); "
        "import engine.quick, engine.cli, engine.runtime.cli.launch; "
        "import engine.runtime.monitor.main as m; "
        f"from engine.eventlog import open_store; open_store({str(db)!r}); "
        # control.sock, the dispatcher and the loop's modules, as the monitor
        # makes them while the init sets itself up (for a stand-in container).
        "import types; from engine.runtime.shared.statedir import StateDir; "
        f"d = StateDir({str(tmp_path / 'root')!r}, 'c'); d.create(); "
        "mgr = types.SimpleNamespace(paths={}, freezer_state=lambda: 'thawed'); "
        "ct = types.SimpleNamespace(id='c', statedir=d, owner=0, manager=mgr); "
        "sock, disp = m._loop(None, ct); "
        "import _frozen_importlib_external as im; "
        "print(sorted(n for n, m in list(sys.modules.items()) "
        "if isinstance(getattr(m, '__loader__', None), im.SourceFileLoader)))"
    )
    assert out.returncode == 0, out.stderr
    # Imported before the file is installed: by the interpreter at start-up
    # (encodings) and by the stub itself.
    before = {"encodings", "encodings.aliases", "encodings.utf_8", "engine", "engine.codecache"}
    assert set(ast.literal_eval(out.stdout)) - before == set()
