"""Linux security modules (AppArmor, SELinux): what runlog does with them.

runlog applies neither an AppArmor profile nor an SELinux label. A config
that asks for one (``process.apparmorProfile``, ``process.selinuxLabel``,
``linux.mountLabel``) is refused at ``create``, before anything is made,
rather than run unconfined: on a host without the module runc refuses it
too (its validator: "selinux label is specified in config, but selinux is
disabled or not supported"; an AppArmor profile fails when runc writes it
to ``/proc/self/attr``), and where the module is enabled a container must
not silently lose the confinement its config asks for.
"""

from __future__ import annotations

import os

from engine.errors import UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from engine.oci.model import Config

__all__ = ["apparmor_enabled", "refuse_labels", "selinux_enabled"]

APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"
SELINUX_FS = "/sys/fs/selinux"


def apparmor_enabled(path: str = APPARMOR_ENABLED) -> bool:
    try:
        with open(path) as fh:
            return fh.read().strip() == "Y"
    except OSError:
        return False


def selinux_enabled(path: str = SELINUX_FS) -> bool:
    return os.path.isfile(os.path.join(path, "enforce"))


def refuse_labels(
    config: Config, *, apparmor: bool | None = None, selinux: bool | None = None
) -> None:
    """Raise :class:`UnsupportedError` if ``config`` asks for an AppArmor
    profile or an SELinux label (``apparmor``/``selinux``: whether the host
    has the module; looked up when not given)."""
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
    for field, label in (
        ("process.selinuxLabel", config.process.selinux_label),
        ("linux.mountLabel", config.linux.mount_label),
    ):
        if label:
            on = selinux_enabled() if selinux is None else selinux
            why = (
                "runlog does not apply SELinux labels"
                if on
                else "selinux label is specified in config, but selinux is disabled or "
                "not supported"
            )
            raise UnsupportedError(f"{where}: {field} {label!r}: {why}")
