"""The scheduler's path stays light: what `import engine.cli` loads, measured."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sqlalchemy", "alembic", "watchdog", "rich", "orjson", "yaml", "transitions", "argparse")


def _imported(module: str) -> set[str]:
    """What importing ``module`` loads, run as the entry stub runs: ``-I -S``,
    the checkout and the venv's site-packages put on sys.path by hand."""
    paths = [str(Path(__file__).resolve().parent.parent)]
    paths += [p for p in sys.path if p.endswith("site-packages")]
    code = (
        f"import sys; sys.path[0:0] = {paths!r}; import {module}; "
        "sys.stdout.write(' '.join(sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    # What -X importtime saw imported and is there at the end: an import
    # that failed on purpose (engine.deferred's enum) loaded nothing.
    seen = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    return seen & set(out.stdout.split())


@pytest.mark.parametrize(
    "module",
    [
        "engine.cli",
        "engine.eventlog.sqlite",
        "engine.commands.execute",
        "engine.runtime.cli.execute",
    ],
)
def test_hot_path_imports_nothing_heavy(module: str) -> None:
    loaded = _imported(module)
    assert module in loaded  # the measurement saw the import at all
    heavy = {m for m in loaded if m.split(".")[0] in HEAVY}
    assert heavy == set(), f"{module} imports {sorted(heavy)}"


# The hot path, named in one place: every module of the package that a
# scheduler's call loads - the short way (engine.quick), the CLI's
# container commands, create's launch and monitor with what the monitor
# loads before it serves, exec's command and process, what a rootless
# create or a site's runlog.toml adds, and what create loads for the
# containers podman makes (a terminal, hooks, a seccomp filter). Speed
# idioms (C modules, TYPE_CHECKING = False, Protocol = object) belong here
# and nowhere else (test_speed_idioms_stay_on_the_hot_path); a module that
# joins the path is added here, on purpose, and one that leaves it is
# taken out.
HOT_PATH_ENTRIES = (
    "engine.quick",
    "engine.cli, engine.commands.container, engine.control",
    "engine.runtime.cli.launch, engine.runtime.monitor.main, engine.eventlog.sqlite, "
    "engine.runtime.monitor.server, engine.runtime.monitor.dispatch",
    "engine.commands.execute, engine.runtime.cli.execute",
    # A foreground run's stdio copy (run true is measured beside runc's).
    "engine.runtime.cli.foreground",
    "engine.places, engine.siteconfig, engine.cgroups.rootless, engine.linux.userns",
    "engine.runtime.init.console, engine.runtime.monitor.hookexec, engine.linux.seccomp, "
    "engine.linux.libseccomp",
    # Loaded when they are needed: the machine's reader by the monitor on
    # create (its catalog of actions with it), the signal names by kill.
    "engine.machine.reader, engine.oci.signals",
    # The resting monitor: what it imports is what every idle container
    # costs in memory (os alone is 0.2 MiB a monitor).
    "engine.runtime.monitor.lean",
    # delete --force of a container already gone (Slurm's RunTimeDelete
    # after each RunTimeRun): what a create left, and the log put right.
    "engine.runtime.cli.remains",
)
HOT_PATH = frozenset(
    {
        "engine",
        "engine.actions",
        "engine.actions.base",
        "engine.actions.catalog",
        "engine.actions.cgroup",
        "engine.actions.criu",
        "engine.actions.hook",
        "engine.actions.process",
        "engine.actions.registry",
        "engine.actions.state",
        "engine.cgroups",
        "engine.cgroups.base",
        "engine.cgroups.errors",
        "engine.cgroups.files",
        "engine.cgroups.hybrid",
        "engine.cgroups.mounts",
        "engine.cgroups.resources",
        "engine.cgroups.rootless",
        "engine.cgroups.v1",
        "engine.cgroups.v2",
        "engine.cli",
        "engine.cmdline",
        "engine.codecache",
        "engine.commands",
        "engine.commands.container",
        "engine.commands.execute",
        "engine.control",
        "engine.deferred",
        "engine.errors",
        "engine.eventlog",
        "engine.eventlog.chain",
        "engine.eventlog.record",
        "engine.eventlog.sql",
        "engine.eventlog.sqlite",
        "engine.eventlog.store",
        "engine.faults",
        "engine.frozen",
        "engine.identity",
        "engine.jsonfast",
        "engine.layout",
        "engine.lifecycle",
        "engine.linux",
        "engine.linux.caps",
        "engine.linux.clone",
        "engine.linux.enosys",
        "engine.linux.fdpass",
        "engine.linux.ffi",
        "engine.linux.finalize",
        "engine.linux.identity",
        "engine.linux.libseccomp",
        "engine.linux.lsm",
        "engine.linux.mountinfo",
        "engine.linux.rlimits",
        "engine.linux.seccomp",
        "engine.linux.syscalls",
        "engine.linux.userns",
        "engine.machine",
        "engine.machine.definition",
        "engine.machine.reader",
        "engine.machine.runtime",
        "engine.machine.vocabulary",
        "engine.oci",
        "engine.oci.config",
        "engine.oci.errors",
        "engine.oci.gojson",
        "engine.oci.model",
        "engine.oci.mounts",
        "engine.oci.names",
        "engine.oci.signals",
        "engine.oci.state",
        "engine.oci.version",
        "engine.places",
        "engine.quick",
        "engine.runtime",
        "engine.runtime.cli",
        "engine.runtime.cli.execute",
        "engine.runtime.cli.foreground",
        "engine.runtime.cli.launch",
        "engine.runtime.cli.prefork",
        "engine.runtime.cli.remains",
        "engine.runtime.init",
        "engine.runtime.init.cgroupfs",
        "engine.runtime.init.console",
        "engine.runtime.init.mounting",
        "engine.runtime.init.rootfs",
        "engine.runtime.init.stages",
        "engine.runtime.monitor",
        "engine.runtime.monitor.container",
        "engine.runtime.monitor.dispatch",
        "engine.runtime.monitor.hookexec",
        "engine.runtime.monitor.hooks",
        "engine.runtime.monitor.lean",
        "engine.runtime.monitor.main",
        "engine.runtime.monitor.requests",
        "engine.runtime.monitor.server",
        "engine.runtime.monitor.spawn",
        "engine.runtime.shared",
        "engine.runtime.shared.journal",
        "engine.runtime.shared.record",
        "engine.runtime.shared.spool",
        "engine.runtime.shared.statedir",
        "engine.runtime.shared.watcher",
        "engine.service",
        "engine.settings",
        "engine.siteconfig",
        "engine.status",
        "engine.wire",
    }
)


def test_the_hot_path_is_the_modules_named_so() -> None:
    loaded: set[str] = set()
    for entry in HOT_PATH_ENTRIES:
        loaded |= {m for m in _imported(entry) if m.split(".")[0] == "engine"}
    assert sorted(loaded - HOT_PATH) == [], "on the hot path, not named in HOT_PATH"
    assert sorted(HOT_PATH - loaded) == [], "named in HOT_PATH, no longer on the hot path"


# The speed idioms, and what plain Python says instead. C modules are
# imported for the Python module's cost (socket 2-9 ms with selectors and
# enum, signal's enum, os under -S); TYPE_CHECKING = False and
# Protocol = object spare typing (2 ms). Off the hot path they only make
# the code harder to read.
C_MODULES = {
    "_signal": "signal",
    "_socket": "socket",
    "posix": "os",
    "_sha256": "hashlib",
    "_sha1": "hashlib",
    "_md5": "hashlib",
    "_hashlib": "hashlib",
    "_ctypes": "ctypes",
    "_json": "json",
    "_functools": "functools",
    "_io": "io",
    "_stat": "stat",
    "_struct": "struct",
    "_thread": "threading",
    "_collections": "collections",
    "_operator": "operator",
    "_datetime": "datetime",
    "_posixsubprocess": "subprocess",
}


def _speed_idioms(path: Path, label: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), label)):
        where = f"{label}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
            name = target.id if isinstance(target, ast.Name) else None
            if name == "TYPE_CHECKING" and isinstance(value, ast.Constant):
                found.append(
                    f"{where}: TYPE_CHECKING = {value.value!r} (from typing import TYPE_CHECKING)"
                )
            if name == "Protocol" and isinstance(value, ast.Name) and value.id == "object":
                found.append(f"{where}: Protocol = object (from typing import Protocol)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in C_MODULES:
                    plain = C_MODULES[alias.name]
                    found.append(f"{where}: import {alias.name} (import {plain})")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in C_MODULES:
            plain = C_MODULES[node.module]
            found.append(f"{where}: from {node.module} import ... (from {plain} import ...)")
    return found


def _module_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_speed_idioms_stay_on_the_hot_path() -> None:
    root = Path(__file__).resolve().parent.parent
    off_path = []
    for path in sorted((root / "engine").rglob("*.py")):
        if _module_of(path, root) not in HOT_PATH:
            off_path += _speed_idioms(path, str(path.relative_to(root)))
    assert off_path == [], (
        "speed idioms in modules off the hot path (HOT_PATH above): write plain Python "
        "there, as said in parentheses, or, if the module is on a scheduler's path, add "
        "its entry to HOT_PATH_ENTRIES:\n  " + "\n  ".join(off_path)
    )


def test_the_idiom_check_sees_each_idiom(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import _socket\nfrom posix import getpid\nTYPE_CHECKING = False\n"
        "if TYPE_CHECKING:\n    pass\nelse:\n    Protocol = object\n"
        "import socket\nfrom typing import TYPE_CHECKING as T\n"
    )
    assert [f.split(": ", 1)[1].split(" (")[0] for f in _speed_idioms(sample, "sample.py")] == [
        "import _socket",
        "from posix import ...",
        "TYPE_CHECKING = False",
        "Protocol = object",
    ]


# The commands a scheduler calls besides create do without os (1 ms under
# -S, engine.settings); create loads it with the launch.
THIN = (
    "engine.cli",
    "engine.commands.container",
    "engine.control",
    "engine.runtime.shared.statedir",
    "engine.oci.gojson",
    "engine.oci.signals",
)


def test_the_thin_commands_do_without_os() -> None:
    loaded = _imported(",".join(THIN).replace(",", ", "))
    assert set(THIN) <= loaded
    assert "os" not in loaded


# The short way (engine.quick) of state, start, pause, resume and delete:
# not even engine.cli, the errors or `from __future__ import annotations`,
# nor the JSON scanner (a shared library) for the usual reply.
NOT_ON_THE_SHORT_WAY = (
    # The wire format's module: the client speaks it without importing it.
    "engine.wire",
    "engine.cli",
    "engine.errors",
    "engine.runtime",
    "__future__",
    "os",
    "_json",
    "engine.jsonfast",
)


def test_the_short_way_loads_almost_nothing() -> None:
    # engine.control loads once a call is recognized (create forks first).
    loaded = _imported("engine.quick, engine.control")
    assert {"engine.quick", "engine.control", "engine.layout", "_socket"} <= loaded
    assert sorted(m for m in loaded if m in NOT_ON_THE_SHORT_WAY) == []


def test_that_measurement_would_see_engine_cli() -> None:
    assert {"engine.errors", "__future__"} <= _imported("engine.cli")


def test_that_measurement_would_see_os() -> None:
    assert "os" in _imported("engine.runtime.cli.launch")


def test_the_measurement_would_see_a_heavy_import() -> None:
    assert "sqlalchemy" in _imported("engine.eventlog.schema")


# The monitor imports its code before it can run create, so every import
# is on create's critical path; these cost milliseconds each
# (typing 2, pathlib with urllib and ipaddress 3, hashlib's OpenSSL 2,
# dataclasses' generated methods ~0.4 per class, inspect's ast and dis 3 -
# transitions imports inspect, logging and six, and re through
# warnings.filterwarnings; engine.deferred defers them; logging brings
# traceback and threading; socket 2 with selectors, the monitor uses
# _socket) and the path does without.
NOT_ON_CREATE = (
    "typing",
    "pathlib",
    "hashlib",
    "_hashlib",
    "json",
    "dataclasses",
    "ast",
    "dis",
    "logging",
    "traceback",
    "threading",
    "six",
    "socket",
    "selectors",
    "re",
    # Its enums (Signals, Handlers, Sigmasks) cost 0.4 ms; _signal serves.
    "signal",
    # transitions' own stubs serve (engine.deferred).
    "enum",
    # 1.5 ms together; transitions and _sqlite3 take what they use of them
    # from placeholders (engine.deferred).
    "collections",
    "functools",
    # 0.7 ms over _ctypes, which serves the init's system calls (engine.linux.ffi).
    "ctypes",
    # What only some containers need: hooks (with contextlib), a terminal.
    "engine.runtime.monitor.hookexec",
    "contextlib",
    "engine.runtime.init.console",
    "termios",
    "array",
)


def test_the_create_path_does_without_costly_modules() -> None:
    # The monitor, the event store it opens, the loop it loads while the
    # init sets itself up, and the machine's reader it loads with the machine.
    loaded = _imported(
        "engine.runtime.monitor.main, engine.eventlog.sqlite, engine.runtime.monitor.server, "
        "engine.machine.reader"
    )
    assert {"engine.runtime.monitor.main", "transitions", "engine.oci.model"} <= loaded
    costly = sorted(m for m in loaded if m in NOT_ON_CREATE)
    assert costly == [], f"runlog create imports {costly}"


def test_that_measurement_would_see_typing() -> None:
    assert "typing" in _imported("engine.audit.query")


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False
    )


# A machine of runlog's definition, in a fresh interpreter: ``lc``.
_A_MACHINE = (
    "from engine.machine.runtime import Lifecycle; "
    "from engine.machine.definition import default_path, load; "
    "from engine.actions.registry import REGISTRY; "
    "lc = Lifecycle(load(default_path()), REGISTRY); "
)


def test_inspect_loads_when_first_used() -> None:
    code = (
        "import sys; import engine.machine.runtime; import transitions.core as core; "
        "assert 'ast' not in sys.modules; "
        "assert core.inspect.isfunction(engine.deferred.inspect_on_first_use); "
        "import inspect; assert sys.modules['inspect'] is inspect; "
        "assert core.inspect.signature is inspect.signature; "
        "print(inspect.isclass(int), 'ast' in sys.modules)"
    )
    out = _fresh(code)
    assert (out.returncode, out.stdout, out.stderr) == (0, "True True\n", "")


def test_transitions_logs_through_logging_once_something_imports_it() -> None:
    code = (
        "import sys, io; import engine.machine.runtime; import transitions.core as core; "
        "core._LOGGER.debug('quiet %s', 1); core._LOGGER.info('quiet'); "
        "print('logging' in sys.modules); "
        "import logging; stream = io.StringIO(); "
        "logging.basicConfig(level=logging.DEBUG, stream=stream, format='%(name)s: %(message)s'); "
        "core._LOGGER.debug('now %s', 2); "
        "print(stream.getvalue().strip()); "
        "print(*[type(h).__name__ for h in logging.getLogger('transitions.core').handlers])"
    )
    out = _fresh(code)
    assert (out.returncode, out.stderr) == (0, ""), out
    assert out.stdout.splitlines() == ["False", "transitions.core: now 2", "NullHandler"]


def test_transitions_warnings_load_logging_and_stay_as_quiet_as_before() -> None:
    # With its NullHandler, transitions' logger prints nothing unless the
    # application configures logging: the same with the placeholder.
    code = (
        "import sys; import engine.machine.runtime; import transitions.core as core; "
        "core._LOGGER.warning('not shown'); print('logging' in sys.modules)"
    )
    out = _fresh(code)
    assert (out.returncode, out.stdout, out.stderr) == (0, "True\n", "")


def test_a_machine_works_with_the_quiet_logger() -> None:
    code = (
        "import sys; " + _A_MACHINE + "import transitions.core as core; "
        "print(type(core._LOGGER).__name__, lc.may('created', 'start'), "
        "lc.may('stopped', 'start'), 'logging' in sys.modules)"
    )
    out = _fresh(code)
    assert (out.returncode, out.stderr) == (0, ""), out
    assert out.stdout == "QuietLogger True False False\n"


def test_six_is_the_real_one_for_whoever_imports_it_after_transitions() -> None:
    code = (
        "import sys; import engine.machine.runtime; import transitions.core as core; "
        "print('six' in sys.modules, core.string_types); "
        "import six; print(six.string_types == core.string_types, six.PY3)"
    )
    out = _fresh(code)
    assert (out.returncode, out.stderr) == (0, ""), out
    assert out.stdout.splitlines() == ["False (<class 'str'>,)", "True True"]


def test_enum_is_the_real_one_for_whoever_imports_it_after_transitions() -> None:
    # transitions took its own stubs for Enum and EnumMeta (engine.deferred);
    # a machine of string states works with them, and enum itself is whole.
    code = (
        "import sys; import engine.machine.runtime; import transitions.core as core; "
        "print('enum' in sys.modules, core.Enum.__module__, core.EnumMeta.__module__); "
        + _A_MACHINE
        + "print(lc.may('created', 'start'), lc.may('running', 'start')); "
        "import enum; print(enum.Enum.__module__, issubclass(enum.IntEnum, enum.Enum))"
    )
    out = _fresh(code)
    assert (out.returncode, out.stderr) == (0, ""), out
    assert out.stdout.splitlines() == [
        "False transitions.core transitions.core",
        "True False",
        "enum True",
    ]


def test_collections_and_functools_are_the_real_ones_after_transitions() -> None:
    # transitions took OrderedDict, defaultdict, deque and partial from
    # placeholders (engine.deferred): the very objects the real modules hold.
    code = (
        "import sys; import engine.machine.runtime; import transitions.core as core; "
        "print('collections' in sys.modules, 'functools' in sys.modules); "
        "import collections, functools; "
        "print(core.OrderedDict is collections.OrderedDict, "
        "core.defaultdict is collections.defaultdict, core.deque is collections.deque, "
        "core.partial is functools.partial, callable(collections.namedtuple), "
        "callable(functools.reduce))"
    )
    out = _fresh(code)
    assert (out.returncode, out.stderr) == (0, ""), out
    assert out.stdout.splitlines() == ["False False", "True True True True True True"]


def test_sqlite_works_without_functools_and_leaves_the_real_one() -> None:
    # _sqlite3 took lru_cache for its statement caches from a placeholder:
    # more statements than the cache holds, again and again, and an error.
    code = (
        "import sys; from engine.eventlog.sqlite import _sqlite3; "
        "print('functools' in sys.modules, 'collections' in sys.modules); "
        "c = _sqlite3.connect(':memory:', cached_statements=2); "
        "print([c.execute(f'select {n}').fetchone()[0] for n in (1, 2, 1, 3, 1, 2)]); "
        "c.execute('create table t (x)'); "
        "c.executemany('insert into t values (?)', [(n,) for n in range(5)]); "
        "print(c.execute('select sum(x) from t').fetchone()[0]); "
        "import functools; print(functools.lru_cache.__module__, 'collections' in sys.modules); "
        "c.execute('select nosuch from t')"
    )
    out = _fresh(code)
    assert out.returncode == 1
    assert out.stdout.splitlines() == ["False False", "[1, 2, 1, 3, 1, 2]", "10", "functools True"]
    assert "no such column: nosuch" in out.stderr


def test_the_placeholder_lru_cache_caches_as_functools_does() -> None:
    import functools

    from engine.deferred import _Functools

    def calls_of(cache: object) -> tuple[list[int], list[int], tuple[object, ...]]:
        calls: list[int] = []

        def double(x: int) -> int:
            calls.append(x)
            return 2 * x

        cached = cache(double)  # type: ignore[operator]
        results = [cached(x) for x in (1, 1, 2, 3, 1, 3)]
        return results, calls, tuple(cached.cache_info())

    ours = calls_of(_Functools.lru_cache(2))
    assert ours == calls_of(functools.lru_cache(2))
    assert ours == ([2, 2, 4, 6, 2, 6], [1, 2, 3, 1], (2, 4, 2, 2))
    # A negative size caches nothing, as functools' does.
    assert calls_of(_Functools.lru_cache(-1)) == calls_of(functools.lru_cache(-1))


_FILTERS = (
    "import warnings; "
    "print([(a, getattr(m, 'pattern', m), c.__name__, getattr(mod, 'pattern', mod), n) "
    "for a, m, c, mod, n in warnings.filters]); "
    "import sys; print('re' in sys.modules); "
    "print(warnings.filters[0][1].match('An Old TRANSITIONS Version') is not None); "
    "w = lambda m: warnings.warn_explicit(m, DeprecationWarning, 'f.py', 1, module='somemod'); "
    "w('old transitions version'); w('something else')"
)


def test_transitions_warnings_filter_is_the_same_without_re_until_used() -> None:
    # The filter transitions adds, as filterwarnings adds it with re and as
    # it is added during engine.deferred's import: case-insensitive both.
    ours = _fresh("import engine.machine.runtime; " + _FILTERS)
    plain = _fresh("import transitions; " + _FILTERS)
    assert (ours.returncode, plain.returncode) == (0, 0), (ours.stderr, plain.stderr)
    ours_filters, ours_re, ours_case = ours.stdout.splitlines()
    plain_filters, plain_re, plain_case = plain.stdout.splitlines()
    assert (ours_filters, ours_case) == (plain_filters, plain_case) == (ours_filters, "True")
    assert "transitions version" in ours_filters
    assert (ours_re, plain_re) == ("False", "True")
    # Matched when a warning comes: shown once ("default"), the other not.
    assert ours.stderr == plain.stderr
    assert "old transitions version" in ours.stderr and "something else" not in ours.stderr
