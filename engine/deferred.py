"""Standard modules that ``transitions`` imports and runlog's monitor rarely needs.

Every ``runlog create`` imports ``transitions`` in the monitor before it can
act, so what that import drags in is on the critical path. These of its
imports cost more than the rest of it and are, in runlog, almost never used:

* :mod:`inspect` (with ast, dis and tokenize, ~4 ms), for one check that
  runs only when a trigger's name is already a method of the model, which
  runlog's model never has. :func:`inspect_on_first_use` puts a
  placeholder module in ``sys.modules`` whose first attribute lookup
  imports the real one, puts it in ``sys.modules`` and copies its namespace
  into the placeholder (which whoever imported it holds).
  ``importlib.util.LazyLoader`` cannot do this on 3.11: a plain ``import``
  of a lazy module reads its ``__spec__``, which loads it.
* :mod:`logging` (with traceback, linecache, tokenize, threading and
  string, ~5 ms), for a module logger with a ``NullHandler`` whose
  ``debug``/``info`` calls do nothing unless an application configures
  logging - which the monitor does not. :class:`importing_transitions`
  lends ``transitions`` a placeholder during its import only: its logger
  is a :class:`QuietLogger` that stays silent, as the real one would, while
  :mod:`logging` has not been imported (nobody can have configured it), and
  becomes the real ``transitions.core`` logger, with its ``NullHandler``,
  as soon as anything has imported :mod:`logging`, or when it is asked
  for more than ``debug``/``info``.
* ``six`` (~2 ms), for ``six.string_types``, which on Python 3 is
  ``(str,)``: during the same import, a placeholder that has just that.
* :mod:`re` (~1.5 ms), which :func:`warnings.filterwarnings` imports to
  compile the message pattern of the filter ``transitions`` adds for its
  own deprecation warnings. During the same import, that filter is added
  as the real function adds it, with a :class:`LazyPattern` that compiles
  the pattern when a warning is first matched against it (``warnings``,
  in C or Python, only ever calls a pattern's ``match``).

* :mod:`collections` (~1 ms: namedtuple, Counter, ChainMap, the User*
  classes) and :mod:`functools` (~0.5 ms more), for ``OrderedDict``,
  ``defaultdict``, ``deque`` and ``partial``, which both modules take from
  their C halves, ``_collections`` and ``_functools``. During the same
  import, placeholders hand ``transitions`` those very classes, so
  nothing differs but what was not loaded.

* :mod:`enum` (~0.8 ms), for ``isinstance`` checks of states given as enum
  members, which runlog's states (the names in statemachine.yaml) never
  are. During the same import ``enum`` cannot be imported, and
  ``transitions`` takes the stub classes it defines for Pythons without
  it (``transitions.core``'s own fallback); whatever imports ``enum``
  afterwards gets the real one.

Nothing else ever sees a placeholder: they leave ``sys.modules`` when the
import is done. A ``transitions`` that wanted more of them would fail to
import, loudly, on every ``create``.
"""

from __future__ import annotations

import _functools  # type: ignore[import-not-found]  # functools' C half: no stub
import sys
import warnings
from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    import re
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "LazyPattern",
    "QuietLogger",
    "importing_sqlite",
    "importing_transitions",
    "inspect_on_first_use",
]

# re.IGNORECASE, which filterwarnings gives every message pattern.
_IGNORECASE = 2


def inspect_on_first_use() -> None:
    """A placeholder for :mod:`inspect` until something looks into it."""
    if "inspect" in sys.modules:
        return
    placeholder = ModuleType("inspect")

    def load(name: str) -> object:
        if sys.modules.get("inspect") is placeholder:
            del sys.modules["inspect"]
        import inspect

        vars(placeholder).update(vars(inspect))
        return getattr(inspect, name)

    placeholder.__getattr__ = load  # type: ignore[method-assign]
    sys.modules["inspect"] = placeholder


class _NullHandler:
    """Stands for ``logging.NullHandler`` until :mod:`logging` is loaded."""


class QuietLogger:
    """A module logger that costs nothing until :mod:`logging` is imported."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: list[object] = []
        self._logger: logging.Logger | None = None

    def addHandler(self, handler: object) -> None:  # noqa: N802 (logging's name)
        if self._logger is not None:
            self._logger.addHandler(handler)  # type: ignore[arg-type]
        else:
            self._handlers.append(handler)

    def real(self) -> logging.Logger:
        """The real logger (importing :mod:`logging` if need be), with the
        handlers added so far."""
        if self._logger is None:
            import logging

            logger = logging.getLogger(self.name)
            for handler in self._handlers:
                logger.addHandler(
                    logging.NullHandler() if isinstance(handler, _NullHandler) else handler  # type: ignore[arg-type]
                )
            self._handlers.clear()
            self._logger = logger
        return self._logger

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self._logger is not None or "logging" in sys.modules:
            self.real().debug(msg, *args, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self._logger is not None or "logging" in sys.modules:
            self.real().info(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # warning, error, exception, setLevel, ...: the real thing.
        return getattr(self.real(), name)


class _Logging(ModuleType):
    """What ``import logging`` gives during :class:`importing_transitions`."""

    NullHandler = _NullHandler

    def getLogger(self, name: str | None = None) -> QuietLogger:  # noqa: N802
        return QuietLogger(name or "root")


class _Six(ModuleType):
    """What ``import six`` gives during :class:`importing_transitions`:
    ``string_types``, all ``transitions`` takes from six, as six defines
    it on Python 3."""

    string_types = (str,)


class _Collections(ModuleType):
    """What ``import collections`` gives during :class:`importing_transitions`:
    the three classes ``transitions`` takes from it, which the real module
    itself takes from ``_collections``."""

    from _collections import OrderedDict, defaultdict, deque  # type: ignore[import-not-found]


def _cache_info(hits: int, misses: int, maxsize: int | None, currsize: int) -> tuple[Any, ...]:
    """What the cache's ``cache_info()`` returns: functools' named tuple, as a tuple."""
    return (hits, misses, maxsize, currsize)


class _Functools(ModuleType):
    """What ``import functools`` gives during :class:`importing_transitions`
    and :class:`importing_sqlite`: ``partial``, which the real module itself
    takes from ``_functools``, and ``lru_cache``, which ``_sqlite3`` calls
    for each connection's statement cache (``lru_cache(size)(connection)``):
    it makes the same C wrapper, ``_functools._lru_cache_wrapper``, without
    the named tuple of ``cache_info()``, which sqlite never asks for."""

    from _functools import partial

    @staticmethod
    def lru_cache(maxsize: int | None = 128, typed: bool = False) -> Callable[[Any], Any]:
        if isinstance(maxsize, int) and maxsize < 0:
            maxsize = 0

        def decorating(user_function: Any) -> Any:
            return _functools._lru_cache_wrapper(user_function, maxsize, typed, _cache_info)

        return decorating


class LazyPattern:
    """A warnings filter's message pattern, compiled (case-insensitive, as
    :func:`warnings.filterwarnings` compiles it) when first matched."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled: re.Pattern[str] | None = None

    def match(self, text: str) -> re.Match[str] | None:
        if self._compiled is None:
            import re

            self._compiled = re.compile(self.pattern, _IGNORECASE)
        return self._compiled.match(text)

    def __repr__(self) -> str:
        return f"re.compile({self.pattern!r}, re.IGNORECASE)"


def _filterwarnings_without_re(real: Any) -> Any:
    """:func:`warnings.filterwarnings`, which adds a filter with a message
    pattern and no module pattern without importing :mod:`re`."""

    def filterwarnings(
        action: str,
        message: str = "",
        category: type[Warning] = Warning,
        module: str = "",
        lineno: int = 0,
        append: bool = False,
    ) -> None:
        plain = (action, None, category, None, lineno)
        if "re" in sys.modules or not message or module or append or plain in warnings.filters:
            real(action, message, category, module, lineno, append)
            return
        real(action, "", category, "", lineno, False)  # checked and inserted first
        # A list at run time (typeshed: a Sequence).
        warnings.filters[0] = (action, LazyPattern(message), category, None, lineno)  # type: ignore[index]

    return filterwarnings


class _Placeholders:
    """Within the block, the modules of ``_PLACEHOLDERS`` not yet imported
    are placeholders and those of ``_UNAVAILABLE`` cannot be imported; after
    it, both leave ``sys.modules``, so whatever imports them later gets the
    real ones. A module already imported (tests, ``runlog audit``) is not
    replaced: the import in the block then gets the real one."""

    _PLACEHOLDERS: tuple[tuple[str, type[ModuleType]], ...] = ()
    _UNAVAILABLE: tuple[str, ...] = ()

    def __enter__(self) -> None:
        self._installed = [
            (name, kind) for name, kind in self._PLACEHOLDERS if name not in sys.modules
        ]
        for name, kind in self._installed:
            sys.modules[name] = kind(name)
        self._blocked = [name for name in self._UNAVAILABLE if name not in sys.modules]
        for name in self._blocked:
            sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError

    def __exit__(self, *exc: object) -> None:
        for name, kind in self._installed:
            if isinstance(sys.modules.get(name), kind):
                del sys.modules[name]
        for name in self._blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


class importing_transitions(_Placeholders):  # noqa: N801 (a statement: `with ...:`)
    """Import ``transitions`` inside this block: ``logging``, ``six``,
    ``collections`` and ``functools`` are placeholders while it imports,
    ``enum`` cannot be imported, and ``warnings.filterwarnings`` adds its
    filter without :mod:`re`."""

    _PLACEHOLDERS = (
        ("logging", _Logging),
        ("six", _Six),
        ("collections", _Collections),
        ("functools", _Functools),
    )
    # Not importable during the import: transitions falls back on its own.
    _UNAVAILABLE = ("enum",)

    def __enter__(self) -> None:
        super().__enter__()
        self._filterwarnings = warnings.filterwarnings
        warnings.filterwarnings = _filterwarnings_without_re(self._filterwarnings)

    def __exit__(self, *exc: object) -> None:
        warnings.filterwarnings = self._filterwarnings
        super().__exit__(*exc)


class importing_sqlite(_Placeholders):  # noqa: N801 (a statement: `with importing_sqlite():`)
    """Import ``_sqlite3`` inside this block: its module init takes
    ``functools.lru_cache`` (for every connection's statement cache), and
    the placeholder's serves without loading :mod:`functools` and
    :mod:`collections`."""

    _PLACEHOLDERS = (("functools", _Functools),)
