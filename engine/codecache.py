"""One file of compiled code for ``runlog create``'s monitor, imported without
the file system's search.

The monitor imports some ninety modules before it can create anything, and
for each the import system searches its path, stats the source, opens and
reads a ``.pyc``: about 30 µs a module, 3 ms in all, on every ``create``.
:func:`build` (run by ``make venv``, next to the entry stub) writes the
code of those modules - runlog's, ``transitions``' and the standard
library's that they use - into one file; :func:`install` puts a finder in
front of ``sys.meta_path`` that takes a module's code from there.

The code is compiled without docstrings (``__doc__`` is ``None``): the
monitor unmarshals every module's code before it can create anything, and
runlog's docstrings are a sixth of it; nothing on this path reads them.
Line numbers, and so tracebacks, are the source's.

A module is taken from the file only while its source is the one the file
was built from: the same modification time (ns) and size, as CPython
checks a ``.pyc``. Otherwise, and for every module not in the file, the
usual finders import it. A file written by another Python (its magic
number) is ignored. Nothing else differs: ``__file__``, ``__spec__``,
``__path__`` and tracebacks are what the usual import gives.

File layout: 8 bytes little-endian header length, the header (a marshalled
dict: magic, and per module name: offset, length, source path, mtime_ns,
size, is-a-package), then the marshalled code objects.
"""

import _frozen_importlib_external
import marshal
import posix
import sys

__all__ = ["CodeFile", "build", "install", "release"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from collections.abc import Iterable
    from types import ModuleType
    from typing import Any

_MAGIC = _frozen_importlib_external.MAGIC_NUMBER


class CodeFile:
    """A meta path finder and loader over one file written by :func:`build`."""

    def __init__(self, path: str) -> None:
        # Read as needed, module by module (pread): reading the megabyte at
        # once cost create 0.6-1 ms before it could fork its monitor, and
        # the monitor-to-be shares the descriptor.
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            size = int.from_bytes(posix.pread(fd, 8, 0), "little")
            header = marshal.loads(posix.pread(fd, size, 8))
            if not isinstance(header, dict) or header.get("magic") != _MAGIC:
                raise ValueError(f"{path}: not a code file of this Python")
            entries: dict[str, tuple[int, int, str, int, int, bool]] = header["modules"]
            length = posix.fstat(fd).st_size - 8 - size
            if any(offset + n > length for offset, n, *_ in entries.values()):
                raise ValueError(f"{path}: shorter than its header says")
        except BaseException:
            posix.close(fd)
            raise
        self.path = path
        self._fd = fd
        self._base = 8 + size
        self._entries = entries

    def find_spec(self, name: str, path: "Any" = None, target: "Any" = None) -> "Any":
        entry = self._entries.get(name)
        if entry is None:
            return None
        _offset, _length, origin, mtime_ns, size, package = entry
        try:
            st = posix.stat(origin)
        except OSError:
            return None
        if st.st_mtime_ns != mtime_ns or st.st_size != size:
            return None  # changed since the build: the usual import
        spec = _frozen_importlib_external.spec_from_file_location(
            name,
            origin,
            loader=self,  # type: ignore[arg-type]
            submodule_search_locations=[origin.rpartition("/")[0]] if package else None,
        )
        return spec

    def release(self) -> None:
        """Serve nothing more, and close the file: the modules taken from
        it keep this finder as their loader."""
        self._entries = {}
        if self._fd >= 0:
            posix.close(self._fd)
            self._fd = -1

    def create_module(self, spec: "Any") -> None:
        return None  # the default module object

    def exec_module(self, module: "ModuleType") -> None:
        offset, length, _origin, _mtime, _size, _package = self._entries[module.__name__]
        data = posix.pread(self._fd, length, self._base + offset)
        if len(data) != length:  # cut short since it was opened
            raise ImportError(f"{self.path}: {module.__name__} is cut short", name=module.__name__)
        exec(marshal.loads(data), module.__dict__)


def install(path: str) -> "CodeFile | None":
    """Put the code file at ``path`` in front of the usual finders; ``None``
    (and nothing changed) if there is none or it does not fit this Python."""
    try:
        finder = CodeFile(path)
    except (OSError, ValueError, EOFError, TypeError, KeyError):
        return None
    sys.meta_path.insert(0, finder)
    return finder


def release() -> None:
    """Take the installed code files out of ``sys.meta_path`` and free them
    (the monitor, once create has reported: what it imports later, the
    watcher, is not in them)."""
    for finder in [f for f in sys.meta_path if isinstance(f, CodeFile)]:
        sys.meta_path.remove(finder)
        finder.release()


def build(path: str, modules: "Iterable[ModuleType]") -> int:
    """Write the code of ``modules`` (those loaded from a ``.py`` source) to
    ``path``, atomically; return how many."""
    import ast  # only when the file is written

    entries: dict[str, tuple[int, int, str, int, int, bool]] = {}
    blobs: list[bytes] = []
    offset = 0
    for module in modules:
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None)
        if spec is None or not isinstance(origin, str) or not origin.endswith(".py"):
            continue
        with open(origin, "rb") as fh:
            source = fh.read()
        st = posix.stat(origin)
        tree = _without_docstrings(ast.parse(source, origin))
        blob = marshal.dumps(compile(tree, origin, "exec", dont_inherit=True))
        package = spec.submodule_search_locations is not None
        entries[spec.name] = (offset, len(blob), origin, st.st_mtime_ns, st.st_size, package)
        blobs.append(blob)
        offset += len(blob)
    header = marshal.dumps({"magic": _MAGIC, "modules": entries})
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(len(header).to_bytes(8, "little"))
        fh.write(header)
        for blob in blobs:
            fh.write(blob)
    posix.replace(tmp, path)
    return len(entries)


def _without_docstrings(tree: "ast.Module") -> "ast.Module":
    """``tree`` without the docstrings of its module, classes and functions
    (a body that is nothing else keeps a ``None`` in its place)."""
    import ast  # only when the file is written

    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            if len(body) > 1:
                del body[0]
            else:
                body[0].value.value = None
    return tree
