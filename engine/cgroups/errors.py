"""Errors of the cgroup managers.

    RunlogError                    (engine.errors)
    ├── UnsupportedError           --systemd-cgroup, device rules on cgroup v2
    └── CgroupError                a cgroup operation failed (path, controller)
        └── ResourcesError         linux.resources in config.json does not parse (field)

Messages say what failed, where (the cgroup directory or the config field),
and what to do about it.
"""

from __future__ import annotations

from engine.errors import RunlogError

__all__ = ["CgroupError", "ResourcesError"]


class CgroupError(RunlogError):
    """A cgroup could not be created, written, read, frozen or removed.

    ``path`` is the directory (or file) involved, ``controller`` the cgroup
    controller ("memory", "freezer", ...; "unified" for the cgroup2 tree),
    each ``None`` when the failure is not about one.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        controller: str | None = None,
    ) -> None:
        self.path = path
        self.controller = controller
        super().__init__(message)


class ResourcesError(CgroupError):
    """``linux.resources`` holds a value of the wrong type or range."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"config.json {field}: {problem}; fix the container's config.json")
