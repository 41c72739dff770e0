"""Who asked, beyond a uid and a pid: what every event's actor carries.

- ``user``: the uid's name (the password database, where it has one);
- ``loginuid``: the audit login uid of the asking process
  (``/proc/PID/loginuid``; unset, 4294967295, is None): who logged in, even
  through su or sudo;
- the scheduler's context from the asking process's environment: Slurm's
  ``SLURM_JOB_ID``, ``SLURM_STEP_ID`` and ``SLURM_JOB_USER`` as
  ``slurm_job``, ``slurm_step``, ``slurm_user``;
- podman's, from the annotations it passes at create
  (:func:`from_annotations`): ``podman_id`` (podman's container id is the
  runtime's) and ``podman_name`` where an annotation carries the name.

Reading another process's environment needs root or the same uid; what
cannot be read is left out, never guessed.
"""

from __future__ import annotations

from engine.status import Actor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["enriched", "from_annotations", "from_environ", "loginuid", "user_name"]

_UNSET = 4294967295
#: Environment variable -> context key.
SLURM = (
    ("SLURM_JOB_ID", "slurm_job"),
    ("SLURM_STEP_ID", "slurm_step"),
    ("SLURM_JOB_USER", "slurm_user"),
)
#: Annotations that name a podman container (CRI-O's, which podman also writes).
_NAME_KEYS = ("io.podman.annotations.name", "io.kubernetes.cri-o.ContainerName")


def user_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def loginuid(pid: int | str) -> int | None:
    """``/proc/PID/loginuid``, or None when unset or unreadable."""
    try:
        with open(f"/proc/{pid}/loginuid", "rb") as fh:
            value = int(fh.read().strip() or _UNSET)
    except (OSError, ValueError):
        return None
    return None if value == _UNSET else value


def from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The scheduler's context in an environment."""
    return {key: environ[var] for var, key in SLURM if environ.get(var)}


def _environ_of(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def from_annotations(container_id: str, annotations: Mapping[str, object]) -> dict[str, str]:
    """podman's identity of a container, from its config's annotations."""
    if annotations.get("io.container.manager") != "libpod":
        return {}
    found = {"podman_id": container_id}
    for key in _NAME_KEYS:
        name = annotations.get(key)
        if isinstance(name, str) and name:
            found["podman_name"] = name
            break
    return found


def enriched(actor: Actor, environ: Mapping[str, str] | None = None) -> Actor:
    """``actor`` with its user name, login uid and Slurm context, read from
    ``/proc/PID`` (or ``environ``, for the current process)."""
    pid = actor.pid
    if environ is None:
        environ = _environ_of(pid) if pid is not None else {}
    context = {**(actor.context or {}), **from_environ(environ)}
    return Actor(
        actor.uid,
        pid,
        actor.transport,
        actor.user or user_name(actor.uid),
        actor.loginuid if actor.loginuid is not None else (None if pid is None else loginuid(pid)),
        context or None,
    )
