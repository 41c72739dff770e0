"""The capability name table, masks and rules: no privilege needed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import RunlogError
from engine.linux import caps
from engine.linux.caps import CapabilityError
from engine.oci.model import Capabilities

HEADER = Path("/usr/include/linux/capability.h")
# Docker's and runc's classic default set, as /proc/PID/status shows it.
DOCKER_DEFAULT_HEX = "00000000a80425fb"
DOCKER_DEFAULT = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
}


def test_every_name_round_trips() -> None:
    assert len(caps.CAP_NUMBERS) == 41
    for cap, n in caps.CAP_NUMBERS.items():
        assert caps.name(n) == cap
        assert caps.number(cap) == n
        assert caps.names_in(caps.mask([cap])) == {cap}


def test_numbers_are_the_kernels() -> None:
    pinned = {
        "CAP_CHOWN": 0,
        "CAP_KILL": 5,
        "CAP_SETPCAP": 8,
        "CAP_NET_BIND_SERVICE": 10,
        "CAP_SYS_ADMIN": 21,
        "CAP_SYS_RESOURCE": 24,
        "CAP_AUDIT_WRITE": 29,
        "CAP_SETFCAP": 31,
        "CAP_MAC_OVERRIDE": 32,
        "CAP_CHECKPOINT_RESTORE": 40,
    }
    assert {cap: caps.number(cap) for cap in pinned} == pinned


@pytest.mark.skipif(not HEADER.exists(), reason="no kernel headers installed")
def test_table_matches_linux_capability_h() -> None:
    defined = {
        m[1]: int(m[2])
        for m in re.finditer(r"#define\s+(CAP_[A-Z_]+)\s+(\d+)\s*$", HEADER.read_text(), re.M)
        if m[1] != "CAP_LAST_CAP"
    }
    assert {cap: defined[cap] for cap in caps.CAP_NUMBERS} == dict(caps.CAP_NUMBERS)


@pytest.mark.parametrize("bad", ["CAP_NOPE", "cap_kill", "KILL", ""])
def test_unknown_names_raise(bad: str) -> None:
    with pytest.raises(CapabilityError, match="not a capability name") as info:
        caps.number(bad)
    assert isinstance(info.value, RunlogError)
    assert info.value.names == (bad,)
    with pytest.raises(CapabilityError):
        caps.mask(["CAP_KILL", bad])


@pytest.mark.parametrize("bad", [-1, 41, 64])
def test_unknown_numbers_raise(bad: int) -> None:
    with pytest.raises(CapabilityError, match=f"no capability has number {bad}"):
        caps.name(bad)


def test_mask_sets_one_bit_per_capability() -> None:
    assert caps.mask([]) == 0
    assert caps.mask(["CAP_CHOWN", "CAP_KILL"]) == 0b100001
    assert caps.mask(["CAP_KILL", "CAP_KILL"]) == 1 << 5
    assert caps.mask(["CAP_CHECKPOINT_RESTORE"]) == 1 << 40
    assert caps.mask(DOCKER_DEFAULT) == int(DOCKER_DEFAULT_HEX, 16)


def test_bits_beyond_the_table_are_kept_visible() -> None:
    assert caps.names_in(1 << 5 | 1 << 45) == {"CAP_KILL", "CAP_#45"}


def test_words_split_at_bit_32() -> None:
    eff = caps.mask(["CAP_KILL", "CAP_MAC_ADMIN"])  # 5 and 33
    prm = eff | caps.mask(["CAP_CHECKPOINT_RESTORE"])  # 40
    inh = caps.mask(["CAP_SETFCAP"])  # 31
    words = caps.to_words(eff, prm, inh)
    assert words == (1 << 5, 1 << 5, 1 << 31, 1 << 1, 1 << 1 | 1 << 8, 0)
    assert caps.from_words(words) == (eff, prm, inh)


def test_parse_status_reads_all_five_sets() -> None:
    text = (
        "Name:\tsh\nCapInh:\t0000000000000000\n"
        f"CapPrm:\t{DOCKER_DEFAULT_HEX}\nCapEff:\t{DOCKER_DEFAULT_HEX}\n"
        "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000020\nNoNewPrivs:\t0\n"
    )
    sets = caps.parse_status(text)
    assert sets["effective"] == sets["permitted"] == DOCKER_DEFAULT
    assert sets["inheritable"] == set()
    assert sets["bounding"] == set(caps.CAP_NUMBERS)
    assert sets["ambient"] == {"CAP_KILL"}


def test_parse_status_refuses_a_text_without_the_sets() -> None:
    with pytest.raises(ValueError, match="CapAmb"):
        caps.parse_status("CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t0\n")


def test_current_reads_this_process() -> None:
    now = caps.current()
    assert set(now) == {"bounding", "effective", "permitted", "inheritable", "ambient"}
    # Nothing can hold a capability outside its bounding set after an execve;
    # pytest was started by one.
    assert now["permitted"] <= now["bounding"] | now["inheritable"] | now["ambient"]


def test_last_cap_is_the_kernels() -> None:
    assert caps.last_cap() == int(Path("/proc/sys/kernel/cap_last_cap").read_text())


def test_split_known_skips_what_the_kernel_does_not_know() -> None:
    bits, unknown = caps.split_known(["CAP_KILL", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"], 38)
    assert bits == 1 << 5
    assert unknown == ["CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
    assert caps.split_known(["CAP_BPF"], 40) == (1 << 39, [])


def test_validate_accepts_runcs_default_set() -> None:
    default = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    caps.validate(Capabilities(bounding=default, effective=default, permitted=default))
    caps.validate(None)


def test_validate_refuses_effective_outside_permitted() -> None:
    with pytest.raises(CapabilityError) as info:
        caps.validate(Capabilities(effective=("CAP_KILL", "CAP_CHOWN"), permitted=("CAP_KILL",)))
    assert info.value.capability_set == "effective"
    assert info.value.names == ("CAP_CHOWN",)
    assert str(info.value) == (
        "capabilities: effective CAP_CHOWN: not in the permitted set; "
        "add them to permitted or drop them"
    )


@pytest.mark.parametrize(
    ("permitted", "inheritable", "missing"),
    [
        (("CAP_KILL",), (), "inheritable"),
        ((), ("CAP_KILL",), "permitted"),
        (("CAP_CHOWN",), ("CAP_KILL",), "permitted"),
        ((), (), "permitted and inheritable"),
    ],
)
def test_ambient_outside_permitted_and_inheritable_is_dropped_not_refused(
    permitted: tuple[str, ...], inheritable: tuple[str, ...], missing: str
) -> None:
    # The kernel raises no such ambient capability; runc runs the container
    # without it.
    asked = Capabilities(permitted=permitted, inheritable=inheritable, ambient=("CAP_KILL",))
    caps.validate(asked)
    assert caps.ambient_dropped(asked) == {"CAP_KILL": missing}


def test_ambient_dropped_keeps_what_the_kernel_raises() -> None:
    asked = Capabilities(
        permitted=("CAP_KILL", "CAP_CHOWN"),
        inheritable=("CAP_CHOWN", "CAP_SYS_ADMIN"),
        ambient=("CAP_SYS_ADMIN", "CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"),
    )
    assert caps.ambient_dropped(asked) == {
        "CAP_KILL": "inheritable",
        "CAP_NET_RAW": "permitted and inheritable",
        "CAP_SYS_ADMIN": "permitted",
    }
    assert list(caps.ambient_dropped(asked)) == ["CAP_KILL", "CAP_NET_RAW", "CAP_SYS_ADMIN"]
    assert caps.ambient_dropped(None) == {}
    assert caps.ambient_dropped(Capabilities(ambient=())) == {}


def test_ambient_warning_of_runc_specs_bundle() -> None:
    # `runc spec`: bounding = effective = permitted = ambient, no inheritable.
    default = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    asked = Capabilities(bounding=default, effective=default, permitted=default, ambient=default)
    assert caps.ambient_warning(caps.ambient_dropped(asked)) == (
        "capabilities: ambient: dropped CAP_KILL, CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE "
        "(not in the inheritable set); the kernel raises an ambient capability only if "
        "it is also permitted and inheritable"
    )
    mixed = {"CAP_CHOWN": "permitted and inheritable", "CAP_KILL": "inheritable"}
    assert caps.ambient_warning(mixed) == (
        "capabilities: ambient: dropped CAP_CHOWN (not in the permitted and inheritable "
        "sets), CAP_KILL (not in the inheritable set); the kernel raises an ambient "
        "capability only if it is also permitted and inheritable"
    )


def test_validate_names_the_set_of_an_unknown_name() -> None:
    with pytest.raises(CapabilityError, match=r"^capabilities: bounding CAP_FOO: not a cap"):
        caps.validate(Capabilities(bounding=("CAP_KILL", "CAP_FOO")))


def test_error_lists_names_in_number_order() -> None:
    err = CapabilityError("permitted", ["CAP_SYS_RESOURCE", "CAP_CHOWN"], "why", 1)
    assert err.names == ("CAP_CHOWN", "CAP_SYS_RESOURCE")
    assert str(err) == "capabilities: permitted CAP_CHOWN, CAP_SYS_RESOURCE: why"
    assert err.errno == 1


def test_reading_the_sets_imports_nothing() -> None:
    # The init reads and sets capabilities after pivot_root, where nothing
    # can be imported: every module it needs is loaded with engine.linux.caps.
    code = (
        "import sys; from engine.linux import finalize, caps, rlimits, identity; "
        "before = set(sys.modules); "
        "caps.current(); caps.last_cap(); "
        "caps.lacking('CAP_SYS_RESOURCE'); caps.lacking('CAP_KILL'); "
        "caps.validate(None); rlimits.check([]); "
        "print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
