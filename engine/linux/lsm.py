"""Linux security modules (AppArmor, SELinux): what runlog does with them.

runlog applies neither an AppArmor profile nor an SELinux label.

* ``process.apparmorProfile`` is refused at ``create``, before anything is
  made, rather than run unconfined (an AppArmor profile fails in runc too
  when it writes it to ``/proc/self/attr``, where AppArmor is off).
* ``process.selinuxLabel`` and ``linux.mountLabel`` are refused where
  SELinux is enabled - a container must not silently lose the confinement
  its config asks for - and an invalid label is named as such. Where
  SELinux is not enabled there is nothing to lose: the labels are ignored,
  with a warning in the create event (crun ignores them there; runc
  ignores a mount label and refuses a process label - see
  docs/conformance.md).
"""

from __future__ import annotations

import os

from engine.errors import UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.oci.model import Config

__all__ = [
    "apparmor_enabled",
    "ignored_labels",
    "refuse_labels",
    "selinux_enabled",
    "valid_label",
]

APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"
SELINUX_FS = "/sys/fs/selinux"


def apparmor_enabled(path: str = APPARMOR_ENABLED) -> bool:
    try:
        with open(path) as fh:
            return fh.read().strip() == "Y"
    except OSError:
        return False


def selinux_enabled(path: str | None = None) -> bool:
    """Whether SELinux is enabled: selinuxfs is mounted (``path``, by
    default :data:`SELINUX_FS`, has ``enforce``), as libselinux decides."""
    return os.path.isfile(os.path.join(SELINUX_FS if path is None else path, "enforce"))


def _labels(config: Config) -> list[tuple[str, str]]:
    """The SELinux labels ``config`` sets, with their fields."""
    pairs = (
        ("process.selinuxLabel", config.process.selinux_label),
        ("linux.mountLabel", config.linux.mount_label),
    )
    return [(field, label) for field, label in pairs if label]


def valid_label(label: str) -> bool:
    """An SELinux context's form, ``user:role:type[:level]``, each part
    non-empty (the level may hold colons itself: ``s0:c1,c2``)."""
    parts = label.split(":", 3)
    return len(parts) >= 3 and all(parts)


def refuse_labels(
    config: Config, *, apparmor: bool | None = None, selinux: bool | None = None
) -> None:
    """Raise :class:`UnsupportedError` if ``config`` asks for an AppArmor
    profile, or for an SELinux label where SELinux is enabled (``apparmor``/
    ``selinux``: whether the host has the module; looked up when not given)."""
    where = os.path.join(config.bundle, "config.json")
    profile = config.process.apparmor_profile
    if profile:
        on = apparmor_enabled() if apparmor is None else apparmor
        why = (
            "runlog does not apply AppArmor profiles"
            if on
            else "AppArmor is not enabled on this host"
        )
        raise UnsupportedError(f"{where}: process.apparmorProfile {profile!r}: {why}")
    labels = _labels(config)
    if labels and (selinux_enabled() if selinux is None else selinux):
        field, label = labels[0]
        why = (
            "runlog does not apply SELinux labels"
            if valid_label(label)
            else "invalid SELinux label (expected user:role:type[:level])"
        )
        raise UnsupportedError(f"{where}: {field} {label!r}: {why}")


def ignored_labels(config: Config, *, selinux: bool | None = None) -> str | None:
    """The warning for the SELinux labels ``config`` sets on a host without
    SELinux, which runlog ignores (None: no label, or SELinux enabled, where
    :func:`refuse_labels` has refused them)."""
    labels = _labels(config)
    if not labels or (selinux_enabled() if selinux is None else selinux):
        return None
    named = ", ".join(f"{field} {label!r}" for field, label in labels)
    return f"{named} ignored: SELinux is not enabled on this host"
