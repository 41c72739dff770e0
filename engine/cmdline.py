"""A small command-line parser with runc's conventions, declared as data.

runc (urfave/cli) takes global flags before the command and the command's
flags anywhere after it (Slurm's oci.conf writes ``create ID -b BUNDLE``);
``--flag value``, ``--flag=value``, Go's single-dash ``-flag``, and
``--bool=true|false`` all work; ``--`` ends the flags. ``argparse`` costs
10 ms to import, more than the interpreter's start: this costs nothing.
"""

from __future__ import annotations

from engine.errors import UsageError

__all__ = ["Cmd", "Opt", "parse", "usage"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class Opt:
    """One flag. ``value``: whether it takes an argument; else a boolean."""

    __slots__ = ("choices", "default", "dest", "help", "metavar", "names", "repeat", "value")

    def __init__(
        self,
        *names: str,
        dest: str | None = None,
        value: bool = False,
        default: object = None,
        choices: Sequence[str] | None = None,
        repeat: bool = False,
        metavar: str = "VALUE",
        help: str = "",
    ) -> None:
        self.names = names
        long = [n for n in names if n.startswith("--")] or list(names)
        self.dest = dest or long[0].lstrip("-").replace("-", "_")
        self.value = value or repeat
        self.default = ([] if repeat else default) if default is None else default
        self.choices = tuple(choices) if choices else None
        self.repeat = repeat
        self.metavar = metavar
        self.help = help


class Cmd:
    """A command: its flags, its positional arguments, and where its code is.

    ``target`` is ``"module:function"``, imported only when the command
    runs, so one command never pays for another's imports.
    """

    __slots__ = ("args", "interleave", "max_args", "min_args", "name", "opts", "summary", "target")

    def __init__(
        self,
        name: str,
        target: str,
        summary: str,
        args: str = "",
        min_args: int = 0,
        max_args: int | None = 0,
        opts: Sequence[Opt] = (),
        *,
        interleave: bool = True,
    ) -> None:
        self.name = name
        # False: the flags end at the first positional argument (runc's
        # SkipArgReorder: `exec ID ls -l` passes -l to ls).
        self.interleave = interleave
        self.target = target
        self.summary = summary
        self.args = args
        self.min_args = min_args
        self.max_args = max_args
        self.opts = tuple(opts)


def _lookup(opts: Sequence[Opt], name: str) -> Opt | None:
    for opt in opts:
        if name in opt.names:
            return opt
    return None


def parse(
    opts: Sequence[Opt], argv: Sequence[str], *, interleave: bool, where: str
) -> tuple[dict[str, object], list[str]]:
    """Parse ``argv`` against ``opts``: return (flags by dest, positionals).

    ``interleave`` False stops at the first positional (global flags, which
    end at the command's name).
    """
    flags: dict[str, object] = {
        o.dest: (list(o.default) if isinstance(o.default, list) else o.default) for o in opts
    }
    positionals: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positionals.extend(argv[i:])
            break
        if len(arg) < 2 or not arg.startswith("-"):
            positionals.append(arg)
            if not interleave:
                positionals.extend(argv[i:])
                break
            continue
        name, eq, inline = arg.partition("=")
        opt = _lookup(opts, name)
        if opt is None and not name.startswith("--"):
            opt = _lookup(opts, "-" + name)  # Go's -flag spelling of --flag
        if opt is None:
            raise UsageError(f"{where}: flag provided but not defined: {name}")
        if opt.value:
            if eq:
                value = inline
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise UsageError(f"{where}: flag needs an argument: {name}")
            if opt.choices is not None and value not in opt.choices:
                raise UsageError(
                    f"{where}: {name}: invalid value {value!r} (one of: {', '.join(opt.choices)})"
                )
            current = flags[opt.dest]
            if opt.repeat and isinstance(current, list):
                current.append(value)
            else:
                flags[opt.dest] = value
        elif eq:
            low = inline.lower()
            if low not in _TRUE + _FALSE:
                raise UsageError(f"{where}: {name}: invalid boolean value {inline!r}")
            flags[opt.dest] = low in _TRUE
        else:
            flags[opt.dest] = True
    return flags, positionals


def check_args(cmd: Cmd, positionals: Sequence[str], prog: str) -> None:
    """runc's wording: ``"state" requires exactly 1 argument(s)``."""
    n = len(positionals)
    lo, hi = cmd.min_args, cmd.max_args
    if hi is not None and lo == hi and n != lo:
        raise UsageError(f'{prog}: "{cmd.name}" requires exactly {lo} argument(s)')
    if n < lo:
        raise UsageError(f'{prog}: "{cmd.name}" requires a minimum of {lo} argument(s)')
    if hi is not None and n > hi:
        raise UsageError(f'{prog}: "{cmd.name}" requires a maximum of {hi} argument(s)')


def _opt_lines(opts: Sequence[Opt]) -> list[str]:
    rows = []
    for opt in opts:
        names = ", ".join(opt.names) + (f" {opt.metavar}" if opt.value else "")
        text = opt.help
        if opt.choices:
            text += f" ({'|'.join(opt.choices)})"
        if opt.default not in (None, False, []):
            text += f" (default: {opt.default})"
        rows.append((names, text))
    width = max((len(n) for n, _ in rows), default=0)
    return [f"   {n.ljust(width)}  {t}" for n, t in rows]


def usage(prog: str, cmd: Cmd | None, commands: Sequence[Cmd], globals_: Sequence[Opt]) -> str:
    if cmd is not None:
        lines = [f"usage: {prog} {cmd.name} [options] {cmd.args}".rstrip(), "", cmd.summary]
        if cmd.opts:
            lines += ["", "options:", *_opt_lines(cmd.opts)]
        return "\n".join(lines)
    width = max(len(c.name) for c in commands)
    lines = [
        f"usage: {prog} [global options] command [options] [arguments...]",
        "",
        "commands:",
        *(f"   {c.name.ljust(width)}  {c.summary}" for c in commands),
        "",
        "global options:",
        *_opt_lines(globals_),
    ]
    return "\n".join(lines)
