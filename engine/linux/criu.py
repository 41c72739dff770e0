"""CRIU: whether it can work on this host, and its dump and restore.

``criu check`` probes the kernel features a dump and a restore need; where
it fails, its errors name what is missing (a kernel option, a vDSO this
CRIU does not know: Debian 12's criu 3.17 on kernel 6.18). runlog's
``checkpoint`` and ``restore`` say so, rather than let a dump fail
half-way. ``RUNLOG_CRIU`` names another criu (``make criu`` builds one
where Debian's fails its check).

:func:`dump` and :func:`restore` drive the ``criu`` command line with
what runc asks of CRIU through its RPC: the container's root, its mounts
from outside and its stdio as external resources (:data:`RUNLOG_IMAGE`
keeps which they were), the v1 freezer to stop the tree, and on restore
the new cgroup.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.errors import ActionError

__all__ = ["binary", "dump", "problem", "restore"]

#: Seconds ``criu check`` may take.
CHECK_TIMEOUT = 30


def problem(criu: str | None = None) -> str | None:
    """``None`` if CRIU (``criu``, else :func:`binary`) can work here; else
    what is missing, in one line."""
    criu = criu or binary()
    if criu is None:
        return "criu is not installed (Debian's criu package)"
    try:
        out = subprocess.run(
            [criu, "check"],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"criu check: {err}"
    if out.returncode == 0:
        return None
    errors = []
    for line in (out.stderr + out.stdout).splitlines():
        if line.startswith("Error"):
            # "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"
            errors.append(line.partition("): ")[2] or line)
    found = "; ".join(errors) or (out.stderr or out.stdout).strip() or f"exit {out.returncode}"
    version = _version(criu)
    return f"criu check fails ({version}, kernel {os.uname().release}): {found}"


def _version(criu: str) -> str:
    try:
        out = subprocess.run(
            [criu, "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "criu"
    for line in out.stdout.splitlines():
        if line.startswith("Version:"):
            return "criu " + line.split(":", 1)[1].strip()
    return "criu"


# -- dump and restore ------------------------------------------------------

#: What runlog keeps next to CRIU's images: the container's stdio and its
#: mounts from outside (what restore gives CRIU back), and who made them.
RUNLOG_IMAGE = "runlog.json"

#: Seconds a dump or a restore may take.
RUN_TIMEOUT = 300


def binary() -> str | None:
    """The criu to run: ``RUNLOG_CRIU`` (a path), else ``criu`` on PATH."""
    return os.environ.get("RUNLOG_CRIU") or shutil.which("criu")


def dump(
    criu: str,
    pid: int,
    rootfs: str,
    image: str,
    *,
    work: str = "",
    leave_running: bool = False,
    freezer: str | None = None,
    cgroups: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """``criu dump`` of the tree under ``pid`` (the init, pid 1 of its own
    pid and mount namespaces) into ``image``. The mounts bound in from
    outside and the stdio opened outside are CRIU "external" resources, as
    runc makes them; which they are, and where they came from, goes to
    ``image/runlog.json`` for :func:`restore`. Returns what the event keeps."""
    os.makedirs(image, mode=0o700, exist_ok=True)
    if work:
        os.makedirs(work, mode=0o700, exist_ok=True)
    mounts = _external_mounts(pid, cgroups or {})
    stdio = [_stdio_key(pid, fd) for fd in (0, 1, 2)]
    args = [criu, "dump", "-t", str(pid), "-D", image, "--root", rootfs]
    for mount in mounts:
        args += ["--external", f"mnt[{mount['dest']}]:{mount['dest']}"]
    for key in stdio:
        if key is not None and key.startswith("file["):
            args += ["--external", key]
    if freezer:
        args += ["--freeze-cgroup", freezer]
    if leave_running:
        args.append("--leave-running")
    _write_json(os.path.join(image, RUNLOG_IMAGE), {"stdio": stdio, "mounts": mounts})
    result = _run(args + list(extra), "dump", work or image)
    result.update(image_path=image, leave_running=leave_running, external_mounts=len(mounts))
    return result


def restore(
    criu: str,
    image: str,
    rootfs: str,
    *,
    work: str = "",
    cgroups: Mapping[str, str],
    binds: Mapping[str, str],
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """``criu restore`` of ``image`` (made by :func:`dump`) onto ``rootfs``,
    into the cgroup whose directories are ``cgroups`` (controller ->
    directory): CRIU is started in it and leaves the cgroups alone, so the
    tree it restores is born there. The stdio the dump saw opened outside
    are this process's 0-2; the mounts bound in from outside come from
    ``binds`` (destination -> source: the new bundle's), the container's
    new cgroup, or where they came from at the dump. ``pid`` in the result:
    the restored init's, a child of CRIU that CRIU leaves to the nearest
    subreaper (the caller's)."""
    try:
        with open(os.path.join(image, RUNLOG_IMAGE), encoding="utf-8") as fh:
            saved = json.load(fh)
    except FileNotFoundError:
        raise ActionError(
            f"{image}: no {RUNLOG_IMAGE}: not a checkpoint runlog made (runlog checkpoint)"
        ) from None
    except (OSError, ValueError) as err:
        raise ActionError(f"{image}/{RUNLOG_IMAGE}: {err}") from None
    if work:
        os.makedirs(work, mode=0o700, exist_ok=True)
    pid_file = os.path.join(work or image, "restore.pid")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pid_file)
    args = [criu, "restore", "-D", image, "-d", "--root", rootfs, "--pidfile", pid_file]
    args += ["--manage-cgroups=ignore"]
    for mount in saved.get("mounts", []):
        dest = mount["dest"]
        source = binds.get(dest) or cgroups.get(mount.get("cgroup") or "") or mount["source"]
        args += ["--external", f"mnt[{dest}]:{source}"]
    for fd, key in enumerate(saved.get("stdio", [])):
        if key is not None:
            args += ["--inherit-fd", f"fd[{fd}]:{key}"]
    directories = sorted(set(cgroups.values()))

    def enter() -> None:  # in CRIU, before its exec
        for directory in directories:
            with open(os.path.join(directory, "cgroup.procs"), "w") as fh:
                fh.write("0")

    result = _run(args + list(extra), "restore", work or image, enter)
    try:
        with open(pid_file, encoding="ascii") as fh:
            result["pid"] = int(fh.read().strip())
    except (OSError, ValueError) as err:
        raise ActionError(f"criu restore left no pid ({pid_file}: {err})") from None
    result["image_path"] = image
    return result


def _run(
    args: list[str], what: str, log_dir: str, before: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run CRIU (its log in ``log_dir``); its errors, if it fails, in one line."""
    log = os.path.join(log_dir, f"{what}.log")
    args = [*args, "-o", log, "-v4"]
    if log_dir != args[args.index("-D") + 1]:
        args += ["-W", log_dir]
    started = time.monotonic()
    # A restore's 0-2 are the ones the restored stdio inherit: CRIU's own,
    # as this process has them (its log is in the file).
    pipe = None if what == "restore" else subprocess.PIPE
    try:
        out = subprocess.run(
            args,
            stdin=None,
            stdout=pipe,
            stderr=pipe,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
            preexec_fn=before,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise ActionError(f"criu {what}: {err}") from None
    seconds = round(time.monotonic() - started, 3)
    if out.returncode != 0:
        said = (out.stderr or out.stdout or "").strip()
        errors = _errors(log) or [said or f"exit {out.returncode}"]
        raise ActionError(
            f"criu {what} failed: {'; '.join(errors[-3:])} (see {log})",
            criu_exit=out.returncode,
            criu_log=log,
        )
    return {"criu": what, "criu_exit": 0, "criu_log": log, "seconds": seconds}


def _errors(log: str) -> list[str]:
    """CRIU's "Error (file:line): what" lines, less the harmless ones."""
    found = []
    try:
        with open(log, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if "Error (" in line and "RLIMIT_NOFILE" not in line:
                    found.append(line.partition("): ")[2].strip() or line.strip())
    except OSError:
        return []
    return found


def _stdio_key(pid: int, fd: int) -> str | None:
    """How CRIU names the init's ``fd`` when it is opened outside: a pipe
    (``pipe:[INODE]``, dumped, given back with --inherit-fd), a file of the
    host's (``file[MNT_ID:INODE]``, external). ``None``: closed."""
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
        st = os.stat(f"/proc/{pid}/fd/{fd}")
    except FileNotFoundError:
        return None
    if link.startswith("pipe:"):
        return link
    tty = stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in _PTY_MAJORS
    if tty or link.startswith(("socket:", "anon_inode:")):
        raise ActionError(
            f"the init's fd {fd} is {link}: runlog checkpoints a container whose stdio are "
            "pipes or files (not a terminal or a socket)"
        )
    mnt_id = 0
    with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("mnt_id:"):
                mnt_id = int(line.split()[1])
    return f"file[{mnt_id:x}:{st.st_ino:x}]"


# pty slaves (Unix98: 136-143) and /dev/tty, /dev/console (5)
_PTY_MAJORS = frozenset({5, *range(136, 144)})


def _mountinfo(path: str) -> list[tuple[str, str, str]]:
    """(device, root, mount point) of each line of a mountinfo file."""
    rows = []
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            fields = line.split()
            rows.append((fields[2], _unescape(fields[3]), _unescape(fields[4])))
    return rows


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _external_mounts(pid: int, cgroups: Mapping[str, str]) -> list[dict[str, str]]:
    """The mounts of the init's namespace bound in from outside it: a part
    of a file system (its root is not ``/``) that neither a whole mount of
    it in the namespace nor the container's root holds. With where each
    came from on the host (and, for the container's own cgroup
    directories, which one)."""
    inside = _mountinfo(f"/proc/{pid}/mountinfo")
    host = _mountinfo("/proc/self/mountinfo")
    by_directory = {directory: key for key, directory in cgroups.items()}
    holders = [(d, r) for d, r, p in inside if r == "/" or p == "/"]
    found = []
    for dev, root, point in inside:
        if point == "/" or root == "/":
            continue
        if any(d == dev and _under(root, r) for d, r in holders):
            continue
        source = _host_path(host, dev, root)
        entry = {"dest": point, "source": source or root}
        if source in by_directory:
            entry["cgroup"] = by_directory[source]
        found.append(entry)
    return found


def _under(path: str, top: str) -> bool:
    return top in ("/", path) or path.startswith(top.rstrip("/") + "/")


def _host_path(host: list[tuple[str, str, str]], dev: str, root: str) -> str | None:
    """Where ``root`` of device ``dev`` is seen on the host: under the host
    mount of that device whose root holds it most closely."""
    best: tuple[str, str] | None = None
    for d, r, p in host:
        if d == dev and _under(root, r) and (best is None or len(r) > len(best[0])):
            best = (r, p)
    if best is None:
        return None
    rest = root[len(best[0].rstrip("/")) :] if best[0] != "/" else root
    return best[1].rstrip("/") + rest if best[1] != "/" else rest


def _write_json(path: str, doc: object) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
