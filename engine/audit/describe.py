"""Events in words: what an action did, what a whole event says happened.

Payload shapes are those :mod:`engine.service` and :mod:`engine.lifecycle`
record: ``actions`` (ok), ``action``/``error``/``done``/``undone`` (failed),
``error`` (rejected); action results are those of :mod:`engine.actions`.
Unknown keys are left out rather than guessed at.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

from engine.eventlog.record import Event

__all__ = ["action_detail", "actor_text", "describe", "hook_run_text", "signal_text"]


def signal_text(signo: object) -> str:
    """``15 (SIGTERM)``."""
    try:
        return f"{signo} ({signal.Signals(int(signo)).name})"  # type: ignore[call-overload]
    except (ValueError, TypeError):
        return str(signo)


def hook_run_text(run: Mapping[str, Any]) -> str:
    """``/usr/libexec/net-setup exit 0 (12.0 ms)``, and the stderr tail of a failure."""
    text = f"{run.get('path')} exit {run.get('exit_code')}"
    if run.get("duration_ms") is not None:
        text += f" ({run['duration_ms']} ms)"
    tail = str(run.get("stderr_tail") or "").strip()
    if tail and run.get("exit_code") != 0:
        text += f": {tail.splitlines()[-1]}"
    return text


def action_detail(result: Mapping[str, Any]) -> str:
    """What one action's result says: pid, signal, exit status, hook runs."""
    bits: list[str] = []
    if "exit_code" in result:
        bits.append(f"exit status {result['exit_code']}")
    if "signal" in result:
        if "all" in result:  # process.signal: sent, to these pids
            pids = result.get("pids") or [result.get("pid")]
            target = "every process: pids" if result.get("all") else "pid"
            where = ", ".join(str(p) for p in pids)
            bits.append(f"signal {signal_text(result['signal'])} sent to {target} {where}")
        else:  # process.collect_status: how the init ended
            bits.append(f"killed by signal {signal_text(result['signal'])}")
    elif "pid" in result:
        bits.append(f"pid {result['pid']}")
    if result.get("init_parent") == "caller":
        bits.append("its parent: the caller of create")
    if result.get("reaped_by_caller"):
        bits.append("status taken by the caller of create, which reaped it")
    if result.get("exec_error"):
        bits.append(f"its exec failed: {result['exec_error']}")
    if result.get("seccomp_skipped"):
        bits.append(f"seccomp: left out {', '.join(result['seccomp_skipped'])}")
    runs = result.get("hooks")
    if runs is None:
        runs = result.get("runs")
    if isinstance(runs, list):
        if runs:
            bits.extend(hook_run_text(r) for r in runs if isinstance(r, Mapping))
        elif "point" in result:
            bits.append("no hooks")
    if "warning" in result:
        bits.append(f"warning: {result['warning']}")
    return "; ".join(bits)


def actor_text(event: Event) -> str:
    """``cli uid 0 (root) pid 4242 job 77.0``: who, as far as the event knows."""
    actor = event.actor
    parts = [actor.transport]
    if actor.uid is not None:
        parts.append(f"uid {actor.uid}" + (f" ({actor.user})" if actor.user else ""))
    if actor.loginuid is not None and actor.loginuid != actor.uid:
        parts.append(f"login {actor.loginuid}")
    if actor.pid is not None:
        parts.append(f"pid {actor.pid}")
    context = actor.context or {}
    if "slurm_job" in context:
        step = context.get("slurm_step")
        parts.append(f"job {context['slurm_job']}" + (f".{step}" if step else ""))
    if "podman_id" in context:
        parts.append(f"podman {context.get('podman_name') or context['podman_id'][:12]}")
    return " ".join(parts)


def describe(event: Event) -> str:
    """One line: what the event says happened."""
    payload = event.payload
    if event.outcome == "rejected":
        return str(payload.get("error", ""))
    if event.outcome == "failed":
        undone = ", ".join(payload.get("undone", [])) or "nothing"
        return f"{payload.get('action')}: {payload.get('error')} (undone: {undone})"
    parts = []
    for record in payload.get("actions", []):
        detail = action_detail(record.get("result") or {})
        parts.append(f"{record.get('action')}({detail})" if detail else str(record.get("action")))
    return " ".join(parts)
