"""Small OCI bundles from a static busybox: for the demo, the tests and the benchmarks.

``make_busybox_bundle(dir, args)`` writes ``dir/rootfs`` (busybox and a
symlink per applet, the usual top-level directories) and ``dir/config.json``
(``runlog spec``'s default, with ``terminal: false``, a writable root and the
given args).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from engine.oci import gojson
from engine.oci.spec import default_spec

__all__ = ["BUSYBOX", "keep_default_cgroup_parent", "make_busybox_bundle"]

BUSYBOX = "/bin/busybox"
_DIRS = ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "run", "var", "usr/bin", "sbin")


def _applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    return [name for name in out.split() if name and "/" not in name]


def make_busybox_bundle(
    directory: str,
    args: Sequence[str] = ("sh", "-c", "true"),
    *,
    busybox: str = BUSYBOX,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> str:
    """Write a bundle; ``edit`` may change the config dict before it is written."""
    rootfs = os.path.join(directory, "rootfs")
    for sub in _DIRS:
        os.makedirs(os.path.join(rootfs, sub), exist_ok=True)
    target = os.path.join(rootfs, "bin", "busybox")
    if not os.path.exists(target):
        shutil.copy2(busybox, target)
        for applet in _applets(busybox):
            link = os.path.join(rootfs, "bin", applet)
            if not os.path.lexists(link):
                os.symlink("busybox", link)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as fh:
        fh.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as fh:
        fh.write("root:x:0:\nnogroup:x:65534:\n")
    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["process"]["args"] = list(args)
    # Writable, unlike runc spec's default: demos and tests leave files in it.
    spec["root"]["readonly"] = False
    if edit is not None:
        edit(spec)
    with open(os.path.join(directory, "config.json"), "w") as fh:
        fh.write(gojson.render(spec, "\t"))
    return directory


@contextmanager
def keep_default_cgroup_parent(root: str = "/sys/fs/cgroup") -> Iterator[None]:
    """Leave runlog's default cgroup parent (``/runlog``) in every hierarchy
    as it was: containers made inside remove their own cgroups on delete,
    and the parent goes again if it was not there before."""
    parents = [
        os.path.join(root, name, "runlog")
        for name in (os.listdir(root) if os.path.isdir(root) else [])
        if os.path.isdir(os.path.join(root, name))
    ]
    existed = {p for p in parents if os.path.isdir(p)}
    try:
        yield
    finally:
        for parent in parents:
            if parent not in existed and os.path.isdir(parent):
                try:
                    os.rmdir(parent)
                except OSError:
                    pass  # still in use: a container outside this block
