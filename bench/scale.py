"""Many running containers on one node, every monitor duty checked for each.

``python bench/scale.py`` (root) starts ``BENCH_CONTAINERS`` (default
1,000) running busybox containers as root; ``BENCH_USER=1`` starts them
(default 256) as one unprivileged user made for the run with ``useradd``
(rootless, a freezer cgroup delegated to it as an admin or Slurm would;
removed after). The kernel's limits are left as they are and printed
(``fs.inotify.max_user_instances`` is per user: 128 by default).

Every ``BENCH_ATTACH``-th container (default 4) is made with
``--log-path`` (its init ``cat``: what goes in through ``attach.sock``
comes back out); such a monitor keeps the container's streams and never
rests. The others run ``sleep``, and their monitors rest (the default).

For every container, each duty of its monitor is checked:

- the control socket: ``runlog state``, answered ``running``;
- the request spool, client side included: ``runlog ctl --spool``;
- external-change detection and ``events --follow``: in batches of
  ``BENCH_FOLLOW`` (default 50) containers, a follower per container, a
  freeze then a thaw written by hand into the container's freezer (the
  monitor resting, for most), each seen by the container's follower as an
  ``external`` ``pause`` and ``resume``;
- attach (the ``--log-path`` ones): a line sent on ``attach.sock`` comes
  back;
- where create gave something up (an inotify limit reached), its event
  says what (``given_up``) and create said it on stderr.

It prints the time each step took, memory per monitor (PSS, private and
RSS from ``/proc/PID/smaps_rollup``; resting and awake apart) and the
threads, descriptors and inotify instances per container, and exits 1 if
any duty failed for any container. ``tests/runtime/test_scale.py`` runs it
(256 as one user) as a slow test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from monitors import usage  # noqa: E402  (bench/, this script's directory)

from engine.bundles import make_busybox_bundle  # noqa: E402
from engine.runtime.monitor.handover import resting  # noqa: E402

#: Commands run at once (the node's cores are few: more only queue).
PARALLEL = 4


class Node:
    """runlog as root, or as one user, with its own root and log."""

    def __init__(self, place: Path, user: Any = None) -> None:
        self.place = place
        self.user = user
        self.root = place / "root"
        self.db = place / "events.db"

    def argv(self, *args: str) -> list[str]:
        return [
            sys.executable, "-m", "engine", "--root", str(self.root), "--db", str(self.db), *args,
        ]  # fmt: skip

    def kw(self) -> dict[str, Any]:
        env = {**os.environ} if self.user is None else self.user.env()
        env = {**env, "PYTHONPATH": str(REPO)}
        env.pop("RUNLOG_MONITOR_LEAN", None)  # resting as by default
        kw: dict[str, Any] = {"env": env, "cwd": str(self.place)}
        if self.user is not None:
            kw.update(user=self.user.uid, group=self.user.gid, extra_groups=[])
        return kw

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: a created container keeps create's stdout and
        # stderr (as runc's does), so a pipe would not end before it does.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            code = subprocess.run(
                self.argv(*args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout,
                check=False,
                **self.kw(),
            ).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(
                args, code, out.read().decode(errors="replace"), err.read().decode(errors="replace")
            )

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            **self.kw(),
        )

    def info(self, cid: str) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.root / cid / "runtime.json").read_text())
        return info


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def each(function: Callable[[str], Any], ids: list[str]) -> list[Any]:
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(function, ids))


@contextmanager
def delegated_freezer(user: Any, name: str) -> Iterator[str]:
    """A freezer cgroup (v1, or cgroup2's) handed to ``user``; its path."""
    base = "/sys/fs/cgroup/freezer"
    if not os.path.isdir(base):
        base = "/sys/fs/cgroup"
    directory = Path(base + name)
    directory.mkdir(parents=True)
    for entry in [directory, *directory.iterdir()]:
        os.chown(entry, user.uid, user.gid)
    try:
        yield name
    finally:
        for sub in sorted(directory.glob("**/"), key=lambda p: -len(p.parts)):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            directory.parent.rmdir()
        except OSError:
            pass


def bundles(node: Node, ids: list[str], attach_every: int, parent: str) -> dict[str, Path]:
    """One rootfs for all; a config per container (its cgroup, its args)."""
    base = node.place / "bundle"
    if node.user is None:
        make_busybox_bundle(str(base), ["sleep", "100000"])
    else:
        from tests.runtime.users import rootless_bundle

        rootless_bundle(node.user, base, ["sleep", "100000"])
    spec = json.loads((base / "config.json").read_text())
    made = {}
    for n, cid in enumerate(ids):
        directory = node.place / "b" / cid
        directory.mkdir(parents=True)
        mine = json.loads(json.dumps(spec))
        mine["root"] = {"path": str(base / "rootfs"), "readonly": True}
        mine["linux"]["cgroupsPath"] = f"{parent}/{cid}"
        if attach_every and n % attach_every == 0:
            mine["process"]["args"] = ["cat"]
        (directory / "config.json").write_text(json.dumps(mine))
        if node.user is not None:
            os.chown(directory, node.user.uid, node.user.gid)
            os.chown(directory / "config.json", node.user.uid, node.user.gid)
        made[cid] = directory
    if node.user is not None:
        os.chown(node.place / "b", node.user.uid, node.user.gid)
    return made


def freezer_file(node: Node, cid: str) -> Path:
    paths = node.info(cid)["cgroup_paths"]
    if "freezer" in paths:
        return Path(paths["freezer"]) / "freezer.state"
    return Path(paths["unified"]) / "cgroup.freeze"


def write_freezer(node: Node, cid: str, frozen: bool) -> None:
    path = freezer_file(node, cid)
    if path.name == "freezer.state":
        path.write_text("FROZEN" if frozen else "THAWED")
    else:
        path.write_text("1" if frozen else "0")


_GIVEN_UP = """
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
found = {}
for cid in json.loads(sys.stdin.read()):
    row = conn.execute(
        "SELECT payload FROM events WHERE container_id = ? AND seq = 1", (cid,)
    ).fetchone()
    found[cid] = None if row is None else json.loads(row[0])["request"].get("given_up")
print(json.dumps(found))
"""


def given_up(node: Node, ids: list[str]) -> dict[str, str | None]:
    """What each container's create event says it gave up, read by the
    log's owner (root opening a user's log could leave it files of root's)."""
    done = subprocess.run(
        [sys.executable, "-c", _GIVEN_UP, str(node.db)],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        check=True,
        **node.kw(),
    )
    found: dict[str, str | None] = json.loads(done.stdout)
    return found


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failures: list[str] = []
        self.began = time.monotonic()

    def step(self, name: str, began: float) -> None:
        self.say(f"{name}: {time.monotonic() - began:.1f} s")

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def fail(self, cid: str, what: str) -> None:
        self.failures.append(f"{cid}: {what}")
        print(f"FAILED {cid}: {what}", flush=True)


def memory(report: Report, name: str, pids: list[int]) -> None:
    rows = [usage(pid) for pid in pids if os.path.exists(f"/proc/{pid}")]
    if not rows:
        return
    n = len(rows)

    def mean(key: str) -> str:
        return f"{sum(r[key] for r in rows) / n / 1024:.2f}"

    def span(key: str) -> str:
        values = [r[key] for r in rows]
        return f"{min(values)}-{max(values)}" if min(values) != max(values) else str(values[0])

    report.say(
        f"{name}: {n} monitors, per monitor PSS {mean('pss')} MiB, private "
        f"{mean('private')} MiB, RSS {mean('rss')} MiB; threads {span('threads')}, "
        f"fds {span('fds')}, inotify instances {span('inotify')} "
        f"({sum(r['inotify'] for r in rows)} in all)"
    )


def limits(report: Report) -> None:
    found = {
        name: Path(f"/proc/sys/fs/inotify/{name}").read_text().strip()
        for name in ("max_user_instances", "max_user_watches")
    }
    found["kernel.pid_max"] = Path("/proc/sys/kernel/pid_max").read_text().strip()
    report.say(f"limits (as they are, unchanged): fs.inotify {found}")


def run(count: int, user: bool = False, attach_every: int = 4, follow: int = 50) -> Report:
    """Start ``count`` containers, check every duty of each, delete them."""
    report = Report()
    with ExitStack() as stack:
        if user:
            from tests.runtime.users import make_user, user_dir

            who = stack.enter_context(make_user("rlscale", 43000))
            place = stack.enter_context(user_dir(who, 0o755))
            tag = f"/runlog-scale/{os.getpid()}"
            parent = stack.enter_context(delegated_freezer(who, tag))
            node = Node(place, who)
        else:
            place = Path(tempfile.mkdtemp(prefix="runlog-scale-"))
            stack.callback(shutil.rmtree, place, True)
            parent = f"/runlog-scale/{os.getpid()}"
            node = Node(place)
        ids = [f"sc{n}" for n in range(count)]
        made = bundles(node, ids, attach_every, parent)
        attachable = [cid for n, cid in enumerate(ids) if attach_every and n % attach_every == 0]
        limits(report)
        try:
            check(node, ids, made, attachable, follow, report)
        finally:
            began = time.monotonic()
            each(lambda cid: node.run("delete", "--force", cid, timeout=120), ids)
            report.step(f"delete --force of {count}", began)
            left = [p.name for p in node.root.iterdir()] if node.root.exists() else []
            if left:
                report.fail("-", f"left behind: {left[:5]}")
            if not user:
                for base in Path("/sys/fs/cgroup").iterdir():
                    for gone in sorted(
                        (base / parent.lstrip("/")).glob("**/"), key=lambda p: -len(p.parts)
                    ):
                        try:
                            gone.rmdir()
                        except OSError:
                            pass
                    try:
                        (base / "runlog-scale").rmdir()
                    except OSError:
                        pass
    who_ = "one user" if user else "root"
    report.say(
        f"{count} containers as {who_}: {len(report.failures)} failures, "
        f"{time.monotonic() - report.began:.0f} s in all"
    )
    return report


def check(
    node: Node,
    ids: list[str],
    made: dict[str, Path],
    attachable: list[str],
    follow: int,
    report: Report,
) -> None:
    began = time.monotonic()
    streams = set(attachable)

    def start(cid: str) -> subprocess.CompletedProcess[str]:
        extra = ["--log-path", str(node.place / f"{cid}.log")] if cid in streams else []
        return node.run("run", "-d", *extra, "--bundle", str(made[cid]), cid)

    created = dict(zip(ids, each(start, ids), strict=True))
    report.step(f"run -d of {len(ids)} ({len(attachable)} with --log-path)", began)
    for cid, done in created.items():
        if done.returncode != 0:
            report.fail(cid, f"run: {done.stderr.strip()}")
    ids = [cid for cid in ids if created[cid].returncode == 0]
    monitors = {cid: int(node.info(cid)["monitor_pid"]) for cid in ids}
    # What was given up at create: said in the event and on stderr.
    gave = 0
    for cid, said in given_up(node, ids).items():
        if said:
            gave += 1
            if said not in created[cid].stderr:
                report.fail(cid, f"gave up {said!r} without saying so on stderr")
        elif created[cid].stderr.strip():
            report.fail(cid, f"create said {created[cid].stderr.strip()!r}")
    report.say(f"given up at create (looked at every second instead): {gave} of {len(ids)}")

    plain = [cid for cid in ids if cid not in streams]
    began = time.monotonic()
    wait_for(lambda: all(resting(monitors[cid]) for cid in plain), 120 + len(ids) / 10)
    report.step("every monitor without streams resting", began)
    memory(report, "resting", [monitors[c] for c in plain if resting(monitors[c])])
    memory(report, "awake (--log-path)", [monitors[c] for c in attachable])

    def control(cid: str) -> str | None:
        done = node.run("state", cid)
        if done.returncode != 0 or json.loads(done.stdout)["status"] != "running":
            return f"state: {done.returncode} {done.stdout.strip()} {done.stderr.strip()}"
        request = '{"op": "state"}'
        done = node.run("ctl", "--spool", "--timeout", "30", cid, request, timeout=60)
        if done.returncode != 0 or json.loads(done.stdout)["status"] != "running":
            return f"ctl --spool: {done.returncode} {done.stdout.strip()} {done.stderr.strip()}"
        return None

    began = time.monotonic()
    for cid, problem in zip(ids, each(control, ids), strict=True):
        if problem:
            report.fail(cid, problem)
    report.step("control socket (state) and spool (ctl --spool) of each", began)

    began = time.monotonic()
    for n in range(0, len(ids), follow):
        batch = ids[n : n + follow]
        followed(node, batch, report)
    report.step(
        f"a hand-written freeze and thaw of each, seen by events --follow ({follow} at once)", began
    )

    began = time.monotonic()
    for cid, problem in zip(attachable, each(lambda c: attach(node, c), attachable), strict=True):
        if problem:
            report.fail(cid, problem)
    report.step(f"attach of the {len(attachable)} with --log-path", began)

    began = time.monotonic()
    wait_for(lambda: all(resting(monitors[cid]) for cid in plain), 120 + len(ids) / 10)
    report.step("every monitor without streams resting again", began)
    memory(report, "resting, after", [monitors[c] for c in plain if resting(monitors[c])])
    awake = [c for c in plain if not resting(monitors[c])]
    if awake:
        report.fail(",".join(awake[:5]), f"{len(awake)} monitors do not rest")


def followed(node: Node, batch: list[str], report: Report) -> None:
    """A follower per container; a freeze and a thaw by hand, each seen."""
    followers = {cid: Lines(node.popen("events", "--follow", cid)) for cid in batch}
    try:
        for cid, follower in followers.items():  # each has printed what was
            if follower.next(30) is None:
                report.fail(cid, "events --follow printed nothing")
        for frozen, trigger in ((True, "pause"), (False, "resume")):
            for cid in batch:
                write_freezer(node, cid, frozen)
            for cid, follower in followers.items():
                if not _seen(follower, trigger):
                    report.fail(cid, f"a hand-written {trigger} not seen by events --follow")
    finally:
        for follower in followers.values():
            follower.close()


class Lines:
    """A follower's output, a JSON line at a time, read straight from its
    pipe: ``select`` on a buffered reader would sleep on lines the reader
    already holds."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.held = b""

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next line, or None at its end or after ``timeout`` seconds."""
        import select

        deadline = time.monotonic() + timeout
        while b"\n" not in self.held:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.held += chunk
        line, self.held = self.held.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        return event

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def _seen(follower: Lines, trigger: str) -> bool:
    """Read the follower until an external ``trigger`` (30 s at most)."""
    deadline = time.monotonic() + 30
    while (event := follower.next(deadline - time.monotonic())) is not None:
        if (
            event.get("trigger") == trigger
            and event.get("actor", {}).get("transport") == "external"
        ):
            return True
    return False


def attach(node: Node, cid: str) -> str | None:
    """A line sent on attach.sock comes back (the init is ``cat``)."""
    path = str(node.root / cid / "attach.sock")
    if node.user is not None:
        # attach.sock is the owner's (0600): the user's runlog attach.
        return _attach_as_user(node, cid)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(20)
            sock.connect(path)
            word = f"ping-{cid}\n".encode()
            sock.sendall(word)
            got = b""
            while word not in got:
                chunk = sock.recv(4096)
                if not chunk:
                    return f"attach: ended, having read {got!r}"
                got += chunk
    except OSError as err:
        return f"attach: {err}"
    return None


def _attach_as_user(node: Node, cid: str) -> str | None:
    word = f"ping-{cid}\n".encode()
    with subprocess.Popen(
        node.argv("attach", cid),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        **node.kw(),
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(word)
            proc.stdin.flush()
            line = proc.stdout.readline()
        finally:
            proc.kill()
    return None if line == word else f"runlog attach: read {line!r}"


def main() -> int:
    if os.geteuid() != 0:
        print("bench/scale.py needs root", file=sys.stderr)
        return 2
    user = os.environ.get("BENCH_USER") == "1"
    count = int(os.environ.get("BENCH_CONTAINERS", "256" if user else "1000"))
    report = run(
        count,
        user=user,
        attach_every=int(os.environ.get("BENCH_ATTACH", "4")),
        follow=int(os.environ.get("BENCH_FOLLOW", "50")),
    )
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
