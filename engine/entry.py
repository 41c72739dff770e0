"""The ``runlog`` command's lean entry point, written into the venv by ``make``.

pip's console script starts Python with ``site`` (the venv's .pth files,
2-3 ms) and tears the interpreter down at exit; a scheduler polling
``runlog state`` pays both on every call. This writes a script run as
``python -I -S`` that puts the package and the venv's site-packages on
``sys.path`` itself, and leaves with ``posix._exit`` after flushing (DESIGN.md:
interpreter start is the floor; everything on top shows in the ratio to
runc). ``python -m engine`` and pip's script keep working as they are.
"""

from __future__ import annotations

import os
import sys
import sysconfig

__all__ = ["install", "render"]

_TEMPLATE = """#!{python} -IS
# runlog: written by `python -m engine.entry {target}` (make venv); see engine/entry.py.
import sys
sys.path[0:0] = {paths!r}
from engine.quick import main
code = main()
try:
    sys.stdout.flush()
    sys.stderr.flush()
except BrokenPipeError:
    pass
import posix
posix._exit(code)
"""


def render(target: str) -> str:
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    site = sysconfig.get_paths()["purelib"]
    paths = [package_parent] if package_parent != site else []
    paths.append(site)
    return _TEMPLATE.format(python=sys.executable, target=target, paths=paths)


def install(target: str) -> None:
    tmp = f"{target}.tmp"
    with open(tmp, "w") as fh:
        fh.write(render(target))
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m engine.entry PATH\n")
        raise SystemExit(2)
    install(sys.argv[1])
