"""The ``runlog`` command's lean entry point, written into the venv by ``make``.

pip's console script starts Python with ``site`` (the venv's .pth files,
2-3 ms) and tears the interpreter down at exit; a scheduler polling
``runlog state`` pays both on every call. This writes a script run as
``python -I -S`` that puts the package and the venv's site-packages on
``sys.path`` itself, and leaves with ``posix._exit`` after flushing (docs/design.md:
interpreter start is the floor; everything on top shows in the ratio to
runc). ``python -m engine`` and pip's script keep working as they are.

Beside the stub goes ``<stub>.code``: the compiled code of what ``create``,
``run`` and ``exec`` import, which the stub installs for those commands
(:mod:`engine.codecache`). It is written from the sources as they are; a
source changed since is imported as usual, and ``make bench`` writes the
file again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

from engine.quick import FORKS_MONITOR

#: The commands whose imports the stub takes from its code file.
CODE_CACHED = frozenset({*FORKS_MONITOR, "exec"})

__all__ = ["code_file", "install", "render"]

_TEMPLATE = """#!{python} -IS
# runlog: written by `python -m engine.entry {target}` (make venv); see engine/entry.py.
import sys
sys.path[0:0] = {paths!r}
if any(word in sys.argv for word in {forks!r}):
    from engine.codecache import install
    install({code!r})
from engine.quick import console
console()
"""


def render(target: str) -> str:
    return _TEMPLATE.format(
        python=sys.executable,
        target=target,
        paths=_paths(),
        code=code_file(target),
        forks=tuple(sorted(CODE_CACHED)),
    )


def _paths() -> list[str]:
    """What the stub puts in front of ``sys.path``: the package, site-packages."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    site = sysconfig.get_paths()["purelib"]
    return [package_parent, site] if package_parent != site else [site]


def code_file(target: str) -> str:
    """Where the stub at ``target`` finds its code file (engine.codecache)."""
    return os.path.abspath(target) + ".code"


# What create's processes import, for the code file: the short way, the
# command line, the launch, the monitor, and what the monitor imports when
# it gets there - the SQLite event store it opens, its loop (while the init
# sets itself up). Imported in a fresh interpreter run as the stub runs, so
# that the file holds what they load and no more.
_CREATE_PATH = (
    "engine.quick",
    "engine.cli",
    "engine.runtime.cli.launch",
    "engine.runtime.monitor.main",
    "engine.eventlog.sqlite",
    "engine.places",
    "engine.runtime.monitor.server",
    "engine.runtime.monitor.dispatch",
    # a rootless create's: its cgroups, and its user namespace's mapping
    # (which the intermediate process waits for)
    "engine.cgroups.rootless",
    "engine.linux.userns",
    # exec's own (its process is made by the caller, engine.runtime.cli.execute)
    "engine.commands.execute",
    "engine.runtime.cli.execute",
)


def install(target: str) -> None:
    """Write the entry stub at ``target`` and its code file beside it."""
    code = render(target)
    build = (
        "import sys; from engine import codecache; "
        + "; ".join(f"import {name}" for name in _CREATE_PATH)
        + f"; print(codecache.build({code_file(target)!r}, list(sys.modules.values())))"
    )
    subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[0:0] = {_paths()!r}; {build}"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tmp = f"{target}.tmp"
    with open(tmp, "w") as fh:
        fh.write(code)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m engine.entry PATH\n")
        raise SystemExit(2)
    install(sys.argv[1])
