"""A bundle's ``config.json``: read, checked, and turned into typed values.

This module owns what runlog accepts as a container configuration: the
fields of runtime-spec config.md and config-linux.md that a runtime acts on,
each checked where runc (``libcontainer/specconv``, ``validate``) or the
spec would refuse it, with the error naming the file and the field
(``process.rlimits[1].type``). Keys runlog does not know are ignored, as
Go's JSON decoder ignores them for runc. ``linux.resources`` and
``linux.seccomp`` are kept as the raw JSON objects, for the packages that
apply them; a seccomp profile is checked here all the same, by
:func:`engine.linux.seccomp.plan`.

JSON ``null`` counts as an absent key, and an empty string as an absent
optional string, because that is what Go's decoder leaves in runc's structs.

Stricter than runc, on purpose: an unknown capability name is an error
(runc warns and drops it), and so is a relative mount destination (runc
warns and mounts it under ``/``); both would otherwise give a container
other than the one the bundle describes.

The values are the frozen records of :mod:`engine.oci.model`, and the
names they are checked against live in :mod:`engine.oci.names`; both are
re-exported here. ``runlog create`` imports this module before it forks the
monitor, so it reads the JSON with the C scanner and its values are
:mod:`engine.frozen` records, not dataclasses (which cost 14 ms to import
and 6.6 ms to build the model's classes). ``runlog kill`` and ``runlog
state`` import :mod:`engine.oci.signals` and :mod:`engine.oci.state`, which
import neither.
"""

from __future__ import annotations

import os
from types import MappingProxyType

from engine import jsonfast
from engine.oci.errors import ConfigError
from engine.oci.model import (
    HOOK_ATTRIBUTES,
    Capabilities,
    Config,
    ConsoleSize,
    Device,
    Hook,
    Hooks,
    IDMapping,
    Linux,
    Mount,
    Namespace,
    Process,
    Rlimit,
    Root,
    User,
    empty_map,
)
from engine.oci.mounts import PROPAGATION
from engine.oci.names import CAPABILITIES, HOOK_POINTS, NAMESPACES, RLIMITS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Container, Mapping
    from typing import Any, NoReturn

__all__ = [
    "CAPABILITIES",
    "HOOK_POINTS",
    "NAMESPACES",
    "RLIMITS",
    "Capabilities",
    "Config",
    "ConsoleSize",
    "Device",
    "Hook",
    "Hooks",
    "IDMapping",
    "Linux",
    "Mount",
    "Namespace",
    "Process",
    "Rlimit",
    "Root",
    "User",
    "load_bundle",
    "parse",
    "parse_process",
]

_CAPABILITY_SET = frozenset(CAPABILITIES)
_UINT32 = 2**32 - 1
_UINT64 = 2**64 - 1
_INT64 = (-(2**63), 2**63 - 1)


def load_bundle(bundle: str) -> Config:
    """Read and check ``<bundle>/config.json``; raise :class:`ConfigError`."""
    path = os.path.join(bundle, "config.json")
    directory = os.path.abspath(bundle)
    if not os.path.isdir(directory):
        raise ConfigError(path, None, f"bundle directory {bundle} does not exist")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ConfigError(path, None, "no such file: the bundle has no config.json") from None
    except OSError as err:
        raise ConfigError(path, None, f"cannot read: {err.strerror}") from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - data.rfind(b"\n", 0, err.start)
        raise ConfigError(path, None, "not UTF-8 text", line=line, col=col) from None
    try:
        doc = jsonfast.loads(text)
    except RecursionError:
        # Deeper than the scanner goes (about 1,000 levels): no config is.
        raise ConfigError(path, None, "invalid JSON: nested too deep") from None
    except jsonfast.JSONError as err:
        # JSONError's text ends with its own "line L column C"; the position
        # goes into ConfigError's attributes and prefix instead.
        problem = str(err).rsplit(": line ", 1)[0]
        raise ConfigError(
            path, None, f"invalid JSON: {problem}", line=err.line, col=err.col
        ) from None
    try:
        return parse(doc, path, bundle=directory)
    except RecursionError:
        raise ConfigError(path, None, "nested too deep") from None


def parse(doc: object, source: str, *, bundle: str | None = None) -> Config:
    """Check a decoded ``config.json`` and build a :class:`Config`.

    ``source`` names the file in errors; ``bundle`` (default: the directory
    of ``source``) is where a relative ``root.path`` is resolved.
    """
    if bundle is None:
        bundle = os.path.dirname(os.path.abspath(source))
    return _Parser(source, os.path.abspath(bundle)).config(doc)


def parse_process(doc: object, source: str, *, bundle: str) -> Process:
    """Check a decoded ``process`` object (``runlog exec --process FILE``,
    runc's process.json) and build a :class:`Process`."""
    parser = _Parser(source, os.path.abspath(bundle))
    return parser.process(parser.obj(doc, "process"))


def _at(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


class _Parser:
    """Reads one document; every check names the field it is about."""

    def __init__(self, path: str, bundle: str) -> None:
        self.path = path
        self.bundle = bundle

    def fail(self, where: str, problem: str) -> NoReturn:
        raise ConfigError(self.path, where, problem)

    # Typed accessors. ``value`` is the JSON value at ``where``.

    def _expect(self, value: object, where: str, wanted: str) -> NoReturn:
        self.fail(where, f"expected {wanted}, got {jsonfast.json_type(value)}")

    def obj(self, value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self._expect(value, where, "an object")
        return value

    def string(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            self._expect(value, where, "a string")
        return value

    def integer(self, value: object, where: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self._expect(value, where, "an integer")
        if not low <= value <= high:
            self.fail(where, f"{value} is out of range ({low} to {high})")
        return value

    def array(self, value: object, where: str) -> list[Any]:
        if not isinstance(value, list):
            self._expect(value, where, "an array")
        return value

    # Keys of an object; absent and null are the same, as for Go.

    def opt_obj(self, parent: dict[str, Any], key: str, base: str) -> dict[str, Any] | None:
        value = parent.get(key)
        return None if value is None else self.obj(value, _at(base, key))

    def opt_string(self, parent: dict[str, Any], key: str, base: str) -> str | None:
        value = parent.get(key)
        if value is None:
            return None
        return self.string(value, _at(base, key)) or None

    def flag(self, parent: dict[str, Any], key: str, base: str) -> bool:
        value = parent.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            self._expect(value, _at(base, key), "true or false")
        return value

    def opt_int(
        self, parent: dict[str, Any], key: str, base: str, low: int, high: int
    ) -> int | None:
        value = parent.get(key)
        return None if value is None else self.integer(value, _at(base, key), low, high)

    def items(self, parent: dict[str, Any], key: str, base: str) -> list[tuple[str, Any]]:
        """The elements of array ``key`` with their field paths."""
        value = parent.get(key)
        if value is None:
            return []
        where = _at(base, key)
        return [(f"{where}[{n}]", item) for n, item in enumerate(self.array(value, where))]

    def strings(self, parent: dict[str, Any], key: str, base: str) -> tuple[str, ...]:
        return tuple(self.string(v, where) for where, v in self.items(parent, key, base))

    def absolute(self, value: str, where: str) -> str:
        if not value.startswith("/"):
            self.fail(where, f"must be an absolute path, got {value!r}")
        return value

    def paths(self, parent: dict[str, Any], key: str, base: str) -> tuple[str, ...]:
        return tuple(
            self.absolute(self.string(v, where), where)
            for where, v in self.items(parent, key, base)
        )

    def string_map(self, parent: dict[str, Any], key: str, base: str) -> Mapping[str, str]:
        where = _at(base, key)
        value = self.opt_obj(parent, key, base)
        if value is None:
            return empty_map()
        for name, item in value.items():
            if not name:
                self.fail(where, "keys must not be empty")
            self.string(item, f"{where}.{name}")
        return MappingProxyType(dict(value))

    # The document.

    def config(self, doc: object) -> Config:
        if not isinstance(doc, dict):
            got = jsonfast.json_type(doc)
            raise ConfigError(self.path, None, f"expected a JSON object, got {got}")
        if doc.get("ociVersion") is None:
            self.fail("ociVersion", "must be specified")
        version = self.string(doc["ociVersion"], "ociVersion")
        # config.md: SemVer. Any 1.x is read; fields from a newer minor
        # version are ignored like any unknown key.
        if not version.startswith("1."):
            self.fail("ociVersion", f"unsupported version {version!r} (runlog reads 1.x)")
        root_doc = self.opt_obj(doc, "root", "")
        if root_doc is None:
            self.fail("root", "must be specified")
        process_doc = self.opt_obj(doc, "process", "")
        if process_doc is None:
            # runc refuses to create a container without one.
            self.fail("process", "must be specified")
        linux_doc = self.opt_obj(doc, "linux", "")
        config = Config(
            path=self.path,
            bundle=self.bundle,
            oci_version=version,
            root=self.root(root_doc),
            process=self.process(process_doc),
            hostname=self.opt_string(doc, "hostname", ""),
            domainname=self.opt_string(doc, "domainname", ""),
            mounts=tuple(self.mount(v, where) for where, v in self.items(doc, "mounts", "")),
            hooks=self.hooks(self.opt_obj(doc, "hooks", "")),
            annotations=self.string_map(doc, "annotations", ""),
            linux=Linux() if linux_doc is None else self.linux(linux_doc),
        )
        self.check_namespaces(config)
        return config

    def root(self, doc: dict[str, Any]) -> Root:
        if doc.get("path") is None:
            self.fail("root.path", "must be specified")
        path = self.string(doc["path"], "root.path")
        if not path:
            self.fail("root.path", "must not be empty")
        if not path.startswith("/"):
            path = os.path.normpath(os.path.join(self.bundle, path))
        return Root(path=path, readonly=self.flag(doc, "readonly", "root"))

    def process(self, doc: dict[str, Any]) -> Process:
        base = "process"
        args = self.strings(doc, "args", base)
        if not args:
            self.fail("process.args", "must not be empty")
        if not args[0]:
            self.fail("process.args[0]", "must not be empty")
        cwd = self.opt_string(doc, "cwd", base)
        if cwd is None:
            self.fail("process.cwd", "must be specified")
        self.absolute(cwd, "process.cwd")
        console = self.opt_obj(doc, "consoleSize", base)
        user = self.opt_obj(doc, "user", base)
        caps = self.opt_obj(doc, "capabilities", base)
        return Process(
            args=args,
            cwd=cwd,
            terminal=self.flag(doc, "terminal", base),
            console_size=None if console is None else self.console_size(console),
            user=User() if user is None else self.user(user),
            env=self.env(doc),
            capabilities=None if caps is None else self.capabilities(caps),
            rlimits=self.rlimits(doc),
            no_new_privileges=self.flag(doc, "noNewPrivileges", base),
            # The kernel's range for /proc/PID/oom_score_adj.
            oom_score_adj=self.opt_int(doc, "oomScoreAdj", base, -1000, 1000),
            apparmor_profile=self.opt_string(doc, "apparmorProfile", base),
            selinux_label=self.opt_string(doc, "selinuxLabel", base),
        )

    def console_size(self, doc: dict[str, Any]) -> ConsoleSize:
        base = "process.consoleSize"
        return ConsoleSize(
            height=self.opt_int(doc, "height", base, 0, _UINT64) or 0,
            width=self.opt_int(doc, "width", base, 0, _UINT64) or 0,
        )

    def user(self, doc: dict[str, Any]) -> User:
        base = "process.user"
        return User(
            uid=self.opt_int(doc, "uid", base, 0, _UINT32) or 0,
            gid=self.opt_int(doc, "gid", base, 0, _UINT32) or 0,
            umask=self.opt_int(doc, "umask", base, 0, _UINT32),
            additional_gids=tuple(
                self.integer(v, where, 0, _UINT32)
                for where, v in self.items(doc, "additionalGids", base)
            ),
        )

    def env(self, doc: dict[str, Any]) -> tuple[str, ...]:
        # runc's prepareEnv refuses entries without "=", with an empty name,
        # or with a NUL byte.
        env = self.strings(doc, "env", "process")
        for n, entry in enumerate(env):
            where = f"process.env[{n}]"
            name, equals, _ = entry.partition("=")
            if not equals:
                self.fail(where, f"{entry!r} is not NAME=VALUE")
            if not name:
                self.fail(where, "the variable name is empty")
            if "\0" in entry:
                self.fail(where, "contains a NUL byte")
        return env

    def capabilities(self, doc: dict[str, Any]) -> Capabilities:
        sets: dict[str, tuple[str, ...]] = {}
        for key in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            names = self.strings(doc, key, "process.capabilities")
            for n, name in enumerate(names):
                if name not in _CAPABILITY_SET:
                    where = f"process.capabilities.{key}[{n}]"
                    spelled = name.upper()
                    if not spelled.startswith("CAP_"):
                        spelled = "CAP_" + spelled
                    if spelled in _CAPABILITY_SET:
                        # runc looks names up exactly as capabilities(7)
                        # writes them: CAP_ prefix, capitals.
                        self.fail(where, f"{name!r} must be written {spelled!r}")
                    self.fail(where, f"unknown capability {name!r}")
            sets[key] = names
        return Capabilities(**sets)

    def typed(
        self, item: object, where: str, known: Container[str], what: str
    ) -> tuple[dict[str, Any], str]:
        """An object with a required ``type`` among ``known``; and that type."""
        entry = self.obj(item, where)
        if entry.get("type") is None:
            self.fail(f"{where}.type", "must be specified")
        kind = self.string(entry["type"], f"{where}.type")
        if kind not in known:
            self.fail(f"{where}.type", f"unknown {what} type {kind!r}")
        return entry, kind

    def rlimits(self, doc: dict[str, Any]) -> tuple[Rlimit, ...]:
        limits: list[Rlimit] = []
        first: dict[str, str] = {}
        for where, item in self.items(doc, "rlimits", "process"):
            entry, kind = self.typed(item, where, RLIMITS, "rlimit")
            if kind in first:
                # A second entry would silently override the first.
                self.fail(f"{where}.type", f"duplicate rlimit type {kind} (first at {first[kind]})")
            first[kind] = where
            hard = self.opt_int(entry, "hard", where, 0, _UINT64) or 0
            soft = self.opt_int(entry, "soft", where, 0, _UINT64) or 0
            if soft > hard:
                # setrlimit(2) fails with EINVAL; say so before anything starts.
                self.fail(f"{where}.soft", f"soft limit {soft} is above the hard limit {hard}")
            limits.append(Rlimit(type=kind, soft=soft, hard=hard))
        return tuple(limits)

    def id_mappings(self, parent: dict[str, Any], key: str, base: str) -> tuple[IDMapping, ...]:
        mappings = []
        for where, item in self.items(parent, key, base):
            entry = self.obj(item, where)
            size = self.opt_int(entry, "size", where, 0, _UINT32) or 0
            if size < 1:
                # The kernel refuses an empty range in uid_map/gid_map.
                self.fail(f"{where}.size", "must be at least 1")
            mappings.append(
                IDMapping(
                    container_id=self.opt_int(entry, "containerID", where, 0, _UINT32) or 0,
                    host_id=self.opt_int(entry, "hostID", where, 0, _UINT32) or 0,
                    size=size,
                )
            )
        return tuple(mappings)

    def mount(self, item: object, where: str) -> Mount:
        doc = self.obj(item, where)
        if doc.get("destination") is None:
            self.fail(f"{where}.destination", "must be specified")
        # runc only warns about a relative destination (deprecated by
        # config.md); runlog refuses it rather than guess.
        destination = self.absolute(
            self.string(doc["destination"], f"{where}.destination"), f"{where}.destination"
        )
        mount = Mount(
            destination=destination,
            type=self.opt_string(doc, "type", where),
            source=self.opt_string(doc, "source", where),
            options=self.strings(doc, "options", where),
            uid_mappings=self.id_mappings(doc, "uidMappings", where),
            gid_mappings=self.id_mappings(doc, "gidMappings", where),
        )
        # runc: "mount field contains null byte"; mount(2) would cut the
        # string short.
        for key in ("destination", "type", "source"):
            if "\0" in (getattr(mount, key) or ""):
                self.fail(f"{where}.{key}", "contains a NUL byte")
        return mount

    def hooks(self, doc: dict[str, Any] | None) -> Hooks:
        if doc is None:
            return Hooks()
        found: dict[str, tuple[Hook, ...]] = {}
        for point, attribute in HOOK_ATTRIBUTES.items():
            found[attribute] = tuple(
                self.hook(v, where) for where, v in self.items(doc, point, "hooks")
            )
        return Hooks(**found)

    def hook(self, item: object, where: str) -> Hook:
        doc = self.obj(item, where)
        if doc.get("path") is None:
            self.fail(f"{where}.path", "must be specified")
        # config.md: "This specification extends the IEEE standard in that
        # path MUST be absolute."
        path = self.absolute(self.string(doc["path"], f"{where}.path"), f"{where}.path")
        timeout = self.opt_int(doc, "timeout", where, *_INT64)
        if timeout is not None and timeout <= 0:
            # config.md: "If set, timeout MUST be greater than zero."
            self.fail(f"{where}.timeout", f"must be greater than zero, got {timeout}")
        return Hook(
            path=path,
            args=self.strings(doc, "args", where),
            env=self.strings(doc, "env", where),
            timeout=timeout,
        )

    def linux(self, doc: dict[str, Any]) -> Linux:
        base = "linux"
        propagation = self.opt_string(doc, "rootfsPropagation", base)
        if propagation is not None and propagation not in PROPAGATION:
            # specconv: "rootfsPropagation=%v is not supported".
            self.fail("linux.rootfsPropagation", f"unknown propagation {propagation!r}")
        resources = self.opt_obj(doc, "resources", base)
        seccomp = self.opt_obj(doc, "seccomp", base)
        if seccomp is not None:
            self.check_seccomp(seccomp)
        return Linux(
            namespaces=self.namespaces(doc),
            uid_mappings=self.id_mappings(doc, "uidMappings", base),
            gid_mappings=self.id_mappings(doc, "gidMappings", base),
            sysctl=self.string_map(doc, "sysctl", base),
            resources=None if resources is None else MappingProxyType(resources),
            cgroups_path=self.opt_string(doc, "cgroupsPath", base),
            devices=tuple(self.device(v, where) for where, v in self.items(doc, "devices", base)),
            masked_paths=self.paths(doc, "maskedPaths", base),
            readonly_paths=self.paths(doc, "readonlyPaths", base),
            rootfs_propagation=propagation,
            seccomp=None if seccomp is None else MappingProxyType(seccomp),
            mount_label=self.opt_string(doc, "mountLabel", base),
        )

    def check_seccomp(self, doc: dict[str, Any]) -> None:
        """Refuse a profile the init could not load, before anything is made.

        Imported here, for a config that has one: the module loads ctypes,
        which ``create`` does without.
        """
        from engine.linux.seccomp import SeccompError, plan

        try:
            plan(doc)
        except SeccompError as err:
            self.fail(err.field, err.problem)

    def namespaces(self, doc: dict[str, Any]) -> tuple[Namespace, ...]:
        found: list[Namespace] = []
        seen: set[str] = set()
        for where, item in self.items(doc, "namespaces", "linux"):
            # specconv: "namespace %q does not exist".
            entry, kind = self.typed(item, where, NAMESPACES, "namespace")
            if kind in seen:
                # specconv: "malformed spec file: duplicated ns".
                self.fail(f"{where}.type", f"duplicate namespace type {kind!r}")
            seen.add(kind)
            path = self.opt_string(entry, "path", where)
            if path is not None:
                # config-linux.md: the path MUST be absolute.
                self.absolute(path, f"{where}.path")
            found.append(Namespace(type=kind, path=path))
        return tuple(found)

    def device(self, item: object, where: str) -> Device:
        doc = self.obj(item, where)
        if doc.get("path") is None:
            self.fail(f"{where}.path", "must be specified")
        path = self.absolute(self.string(doc["path"], f"{where}.path"), f"{where}.path")
        kind = self.opt_string(doc, "type", where)
        # specconv's stringToDeviceRune: c, u (unbuffered char), b, p (fifo).
        if kind not in ("c", "u", "b", "p"):
            self.fail(f"{where}.type", f"must be one of c, u, b, p; got {kind!r}")
        return Device(
            path=path,
            type=kind,
            major=self.opt_int(doc, "major", where, *_INT64) or 0,
            minor=self.opt_int(doc, "minor", where, *_INT64) or 0,
            file_mode=self.opt_int(doc, "fileMode", where, 0, _UINT32),
            uid=self.opt_int(doc, "uid", where, 0, _UINT32),
            gid=self.opt_int(doc, "gid", where, 0, _UINT32),
        )

    def check_namespaces(self, config: Config) -> None:
        """The checks of runc's ``validate`` that need nothing but the config."""
        linux = config.linux
        user = linux.namespace("user")
        if user is None:
            if linux.uid_mappings or linux.gid_mappings:
                key = "uidMappings" if linux.uid_mappings else "gidMappings"
                self.fail(
                    f"linux.{key}",
                    "user namespace mappings given, but linux.namespaces has no user namespace",
                )
        elif user.path is None:
            # A new user namespace needs someone mapped to root in it.
            for key, mappings in (
                ("uidMappings", linux.uid_mappings),
                ("gidMappings", linux.gid_mappings),
            ):
                if not mappings:
                    self.fail(f"linux.{key}", "a new user namespace needs mappings")
        if linux.namespace("uts") is None:
            for key, value in (("hostname", config.hostname), ("domainname", config.domainname)):
                if value is not None:
                    self.fail(key, f"cannot set the {key} without a private uts namespace")
        if linux.namespace("mount") is None:
            for key, paths in (
                ("maskedPaths", linux.masked_paths),
                ("readonlyPaths", linux.readonly_paths),
            ):
                if paths:
                    self.fail(f"linux.{key}", "needs a private mount namespace")
