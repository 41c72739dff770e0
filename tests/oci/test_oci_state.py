"""engine.oci.state: runc's state object, hook state, and Go's time format."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.jsonfast import loads
from engine.oci.gojson import render
from engine.oci.state import OCI_STATUSES, format_time, hook_state, oci_state, parse_time
from engine.oci.version import OCI_VERSION

MAY_1 = 1714557600 * 10**9  # 2024-05-01T10:00:00Z

# Years 0001-9999: what RFC 3339 (and Go's time.Time JSON) can write.
FIRST_NS = -62135596800 * 10**9
LAST_NS = 253402300800 * 10**9 - 1


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (MAY_1, "2024-05-01T10:00:00Z"),
        (MAY_1 + 123456789, "2024-05-01T10:00:00.123456789Z"),
        (MAY_1 + 500000000, "2024-05-01T10:00:00.5Z"),  # trailing zeros dropped, as Go
        (MAY_1 + 120000000, "2024-05-01T10:00:00.12Z"),
        (MAY_1 + 1000, "2024-05-01T10:00:00.000001Z"),
        (MAY_1 + 1, "2024-05-01T10:00:00.000000001Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
        (951782400 * 10**9, "2000-02-29T00:00:00Z"),
        (FIRST_NS, "0001-01-01T00:00:00Z"),  # Go's zero time
        (LAST_NS, "9999-12-31T23:59:59.999999999Z"),
    ],
)
def test_format_time_is_gos_rfc3339nano(ns: int, text: str) -> None:
    assert format_time(ns) == text
    assert parse_time(text) == ns


@given(st.integers(min_value=FIRST_NS, max_value=LAST_NS))
def test_format_time_agrees_with_datetime_and_parses_back(ns: int) -> None:
    seconds, nanos = divmod(ns, 10**9)
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    text = format_time(ns)
    assert text.startswith(moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0"))
    assert text.endswith("Z")
    assert parse_time(text) == ns
    if nanos:
        assert text[19] == "." and not text[:-1].endswith("0")


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2024-05-01T12:00:00+02:00", MAY_1),
        ("2024-05-01T05:00:00.5-05:00", MAY_1 + 500000000),
        ("2024-05-01T10:00:00.000000000Z", MAY_1),
        ("2024-05-01T10:00:00.1Z", MAY_1 + 100000000),
    ],
)
def test_parse_time_offsets_and_fractions(text: str, ns: int) -> None:
    assert parse_time(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x",
        "2024-05-01",
        "2024-05-01T10:00:00",
        "2024-05-01 10:00:00Z",
        "2024-05-01t10:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T10:60:00Z",
        "2024-05-01T10:00:60Z",
        "2024-05-01T10:00:00.Z",
        "2024-05-01T10:00:00.1234567890Z",
        "2024-05-01T10:00:00+0200",
        "2024-05-01T10:00:00ZZ",
        "+024-05-01T10:00:00Z",
    ],
)
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        parse_time(text)


def test_leap_days_parse() -> None:
    assert format_time(parse_time("2000-02-29T00:00:00Z")) == "2000-02-29T00:00:00Z"
    assert format_time(parse_time("2024-02-29T23:59:59Z")) == "2024-02-29T23:59:59Z"


def test_oci_state_is_runcs_state_layout() -> None:
    state = oci_state(
        container_id="c1",
        pid=4242,
        status="running",
        bundle="/bundles/c1",
        rootfs="/bundles/c1/rootfs",
        created=MAY_1 + 123456789,
    )
    # `runc state` prints json.MarshalIndent(state, "", "  ").
    assert render(state, "  ") == (
        "{\n"
        f'  "ociVersion": "{OCI_VERSION}",\n'
        '  "id": "c1",\n'
        '  "pid": 4242,\n'
        '  "status": "running",\n'
        '  "bundle": "/bundles/c1",\n'
        '  "rootfs": "/bundles/c1/rootfs",\n'
        '  "created": "2024-05-01T10:00:00.123456789Z",\n'
        '  "owner": ""\n'
        "}"
    )


def test_oci_state_annotations_and_runlog_keys() -> None:
    state = oci_state(
        container_id="c1",
        pid=0,
        status="stopped",
        bundle="/b",
        rootfs="/b/rootfs",
        created=MAY_1,
        annotations={"org.example.z": "1", "org.example.a": "2"},
        owner="alice",
        oci_version="1.0.2-dev",
        exit_code=137,
        started_at=MAY_1 + 10**9,
        finished_at=MAY_1 + 2 * 10**9 + 5,
    )
    assert list(state) == [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "annotations",
        "owner",
        "exitCode",
        "startedAt",
        "finishedAt",
    ]
    assert list(state["annotations"]) == ["org.example.a", "org.example.z"]
    assert state["ociVersion"] == "1.0.2-dev"
    assert state["owner"] == "alice"
    assert state["exitCode"] == 137
    assert state["startedAt"] == "2024-05-01T10:00:01Z"
    assert state["finishedAt"] == "2024-05-01T10:00:02.000000005Z"
    assert loads(render(state)) == state


def test_oci_state_leaves_out_empty_annotations() -> None:
    state = oci_state(
        container_id="c1",
        pid=1,
        status="created",
        bundle="/b",
        rootfs="/b/r",
        created=0,
        annotations={},
    )
    assert "annotations" not in state
    assert "exitCode" not in state and "startedAt" not in state


@pytest.mark.parametrize("status", ["deleted", "exited", "Running", ""])
def test_state_refuses_a_status_the_spec_does_not_have(status: str) -> None:
    with pytest.raises(ValueError, match="not an OCI container status"):
        oci_state(container_id="c", pid=1, status=status, bundle="/b", rootfs="/r", created=0)
    with pytest.raises(ValueError, match="not an OCI container status"):
        hook_state(container_id="c", status=status, pid=1, bundle="/b")


def test_statuses() -> None:
    assert OCI_STATUSES == ("creating", "created", "running", "paused", "stopped")


def test_hook_state_is_the_runtime_spec_state() -> None:
    state = hook_state(
        container_id="c1",
        status="created",
        pid=4242,
        bundle="/bundles/c1",
        annotations={"b": "2", "a": "1"},
    )
    assert render(state) == (
        f'{{"ociVersion":"{OCI_VERSION}","id":"c1","status":"created","pid":4242,'
        '"bundle":"/bundles/c1","annotations":{"a":"1","b":"2"}}'
    )


def test_hook_state_without_pid() -> None:
    # poststop runs after the init is gone: no pid, as Go's omitempty writes it.
    state = hook_state(container_id="c1", status="stopped", pid=None, bundle="/b")
    assert state == {"ociVersion": OCI_VERSION, "id": "c1", "status": "stopped", "bundle": "/b"}


@pytest.mark.parametrize("status", ["created", "running"])
def test_hook_state_needs_a_pid_while_the_init_lives(status: str) -> None:
    with pytest.raises(ValueError, match="needs its pid"):
        hook_state(container_id="c1", status=status, pid=0, bundle="/b")
