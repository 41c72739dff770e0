"""engine.oci.signals: runc's signal parsing, without importing signal."""

from __future__ import annotations

import signal

import pytest

from engine.oci.errors import SignalError
from engine.oci.signals import SIGNALS, SIGRTMAX, SIGRTMIN, parse_signal, signal_name


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("SIGKILL", 9),
        ("KILL", 9),
        ("kill", 9),
        ("sigkill", 9),
        ("SigTerm", 15),
        ("9", 9),
        ("15", 15),
        ("0", 0),  # kill(2) with 0: is the init alive?
        ("064", 64),
        ("HUP", 1),
        ("WINCH", 28),
        ("SIGUSR1", 10),
        ("usr2", 12),
        ("IOT", 6),
        ("CLD", 17),
        ("POLL", 29),
        ("RTMIN", 34),
        ("SIGRTMIN+1", 35),
        ("rtmin+15", 49),
        ("SIGRTMAX-1", 63),
        ("RTMAX", 64),
        ("SIGRTMAX-30", 34),
        ("34", 34),
    ],
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIG",
        "FOO",
        "SIGFOO",
        "KILLL",
        "65",
        "100",
        "-9",
        "+9",
        " 9",
        "9 ",
        "SIGKILL ",
        "9.0",
        "٩",  # an Arabic-Indic digit: isdigit() but not a number runc reads
        "RTMIN+31",
        "RTMAX-31",
        "RTMIN+",
        "RTMIN-1",
        "SIGSIGKILL",
    ],
)
def test_unknown_signal(text: str) -> None:
    with pytest.raises(SignalError) as caught:
        parse_signal(text)
    assert str(caught.value) == f"unknown signal: {text}"
    assert caught.value.text == text
    assert caught.value.exit_code == 1


def test_table_agrees_with_the_signal_module() -> None:
    for name, number in SIGNALS.items():
        assert getattr(signal, name) == number, name
        assert parse_signal(name) == number
        assert signal_name(number) == name
    assert signal.SIGRTMIN == SIGRTMIN and signal.SIGRTMAX == SIGRTMAX
    assert {s.value for s in signal.Signals if s.value < 32} == set(SIGNALS.values())


@pytest.mark.parametrize(
    ("number", "name"),
    [
        (9, "SIGKILL"),
        (6, "SIGABRT"),
        (17, "SIGCHLD"),
        (29, "SIGIO"),
        (32, "SIG32"),
        (33, "SIG33"),
        (34, "SIGRTMIN"),
        (35, "SIGRTMIN+1"),
        (49, "SIGRTMIN+15"),
        (50, "SIGRTMAX-14"),
        (63, "SIGRTMAX-1"),
        (64, "SIGRTMAX"),
    ],
)
def test_signal_name(number: int, name: str) -> None:
    assert signal_name(number) == name


def test_every_name_parses_back() -> None:
    for number in range(1, 65):
        assert parse_signal(signal_name(number).removeprefix("SIG")) == number


@pytest.mark.parametrize("number", [0, -1, 65, 1000])
def test_signal_name_of_a_non_signal(number: int) -> None:
    with pytest.raises(SignalError, match=f"^unknown signal: {number}$"):
        signal_name(number)
