"""engine.linux.seccomp: a profile checked and planned (pure), then compiled
with libseccomp, exported as BPF, and loaded into a forked child."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from engine.errors import RunlogError
from engine.linux import libseccomp, seccomp
from engine.linux.libseccomp import Filter
from engine.linux.seccomp import Condition, Plan, Rule, SeccompError, plan
from engine.oci.config import parse
from engine.oci.errors import ConfigError

ALLOW = 0x7FFF0000
ERRNO = 0x00050000
TRACE = 0x7FF00000
EPERM_ERRNO = ERRNO | errno.EPERM
REPO = Path(__file__).resolve().parents[2]

Profile = dict[str, Any]


def _profile(**extra: Any) -> Profile:
    """ALLOW by default, ``mkdir`` refused with EPERM (errnoRet 1)."""
    doc: Profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    doc.update(extra)
    return doc


def _rule(**entry: Any) -> Profile:
    """A profile whose one syscalls entry is ``entry`` (names default to mkdir)."""
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], **entry}]}


# -- the plan ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [{}, {"defaultAction": ""}, {"defaultAction": None, "syscalls": []}, {"flags": []}],
)
def test_no_default_action_and_no_syscalls_is_no_filter(doc: Profile) -> None:
    # runc's SetupSeccomp: "assume seccomp disabled".
    assert plan(doc) is None


def test_a_small_profile_in_libseccomp_numbers() -> None:
    got = plan(_profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]))
    assert got == Plan(
        default_action=ALLOW,
        architectures=("SCMP_ARCH_X86_64", "SCMP_ARCH_X86"),
        flags=None,
        rules=(Rule("mkdir", ERRNO | 1, (), "linux.seccomp.syscalls[0]"),),
        optimize=False,
        named=("mkdir",),
    )


@pytest.mark.parametrize(
    ("action", "extra", "value"),
    [
        ("SCMP_ACT_KILL", {}, 0x00000000),  # runc: KILL is KILL_THREAD
        ("SCMP_ACT_KILL_THREAD", {}, 0x00000000),
        ("SCMP_ACT_KILL_PROCESS", {}, 0x80000000),
        ("SCMP_ACT_TRAP", {}, 0x00030000),
        ("SCMP_ACT_ERRNO", {}, ERRNO | errno.EPERM),  # runc's default errno
        ("SCMP_ACT_ERRNO", {"errnoRet": 38}, ERRNO | 38),
        ("SCMP_ACT_ERRNO", {"errnoRet": 0}, ERRNO),
        ("SCMP_ACT_TRACE", {}, TRACE | errno.EPERM),
        ("SCMP_ACT_TRACE", {"errnoRet": 0xFFFF}, TRACE | 0xFFFF),
        ("SCMP_ACT_LOG", {}, 0x7FFC0000),
    ],
)
def test_actions(action: str, extra: Profile, value: int) -> None:
    got = plan(_rule(action=action, **extra))
    assert got is not None
    assert [r.action for r in got.rules] == [value]


def test_default_errno_ret() -> None:
    got = plan({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})
    assert got is not None and got.default_action == ERRNO | 38
    got = plan({"defaultAction": "SCMP_ACT_ERRNO"})
    assert got is not None and got.default_action == EPERM_ERRNO


def test_a_rule_with_the_default_action_is_dropped() -> None:
    # libseccomp refuses it; runc's matchCall skips it. The errno counts.
    doc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOENT},
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        ],
    }
    got = plan(doc)
    assert got is not None
    assert [(r.syscall, r.action) for r in got.rules] == [
        ("chdir", ERRNO | errno.ENOENT),
        ("read", ALLOW),
        ("write", ALLOW),
    ]


def test_args_on_distinct_indexes_are_one_rule() -> None:
    args = [
        {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 0xF0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"},
    ]
    got = plan(_rule(action="SCMP_ACT_ERRNO", args=args))
    assert got is not None
    # MASKED_EQ: value is the mask (datum_a), valueTwo the value (datum_b).
    assert got.rules == (
        Rule(
            "mkdir",
            EPERM_ERRNO,
            (Condition(0, 4, 2, 0), Condition(1, 7, 0xF0, 0x10)),
            "linux.seccomp.syscalls[0]",
        ),
    )


def test_args_sharing_an_index_are_a_rule_each() -> None:
    # runc's matchCall falls back to one rule per arg (ORed) in that case.
    args = [
        {"index": 0, "value": 1, "op": "SCMP_CMP_NE"},
        {"index": 0, "value": 8, "op": "SCMP_CMP_NE"},
        {"index": 2, "value": 3, "op": "SCMP_CMP_GT"},
    ]
    doc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality", "mkdir"], "action": "SCMP_ACT_KILL", "args": args}],
    }
    got = plan(doc)
    assert got is not None
    assert [(r.syscall, r.conditions) for r in got.rules] == [
        ("personality", (Condition(0, 1, 1),)),
        ("personality", (Condition(0, 1, 8),)),
        ("personality", (Condition(2, 6, 3),)),
        ("mkdir", (Condition(0, 1, 1),)),
        ("mkdir", (Condition(0, 1, 8),)),
        ("mkdir", (Condition(2, 6, 3),)),
    ]


def test_absent_index_and_value_are_zero_as_for_runc() -> None:
    got = plan(_rule(action="SCMP_ACT_KILL", args=[{"op": "SCMP_CMP_EQ"}]))
    assert got is not None and got.rules[0].conditions == (Condition(0, 4, 0, 0),)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (None, None),  # runc's default: SPEC_ALLOW where it can be had
        ([], ()),
        (["SECCOMP_FILTER_FLAG_LOG"], ("SECCOMP_FILTER_FLAG_LOG",)),
        (
            ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"),
        ),
    ],
)
def test_flags(flags: list[str] | None, expected: tuple[str, ...] | None) -> None:
    got = plan(_profile(flags=flags))
    assert got is not None and got.flags == expected


@pytest.mark.parametrize(("count", "optimize"), [(32, False), (33, True)])
def test_binary_tree_above_32_syscalls_as_runc(count: int, optimize: bool) -> None:
    names = [f"call{n}" for n in range(count)]
    got = plan(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}],
        }
    )
    assert got is not None and got.optimize is optimize and got.rules == ()


def test_the_config_model_view_is_read_as_is() -> None:
    assert plan(MappingProxyType(_profile())) == plan(_profile())


# -- every refusal, naming its field -----------------------------------------------

S0 = "linux.seccomp.syscalls[0]"


def _with(entry: Profile) -> Profile:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [entry]}


D = "linux.seccomp"
KILL = {"names": ["mkdir"], "action": "SCMP_ACT_KILL"}
ERR = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}


def _arg(**arg: Any) -> Profile:
    return _with({**KILL, "args": [arg]})


# fmt: off
REFUSALS: list[tuple[str, Profile, str, str]] = [
    ("default-missing", {"syscalls": [ERR]}, f"{D}.defaultAction", "must be specified"),
    ("default-unknown", {"defaultAction": "SCMP_ACT_FOO"}, f"{D}.defaultAction",
     'unknown action "SCMP_ACT_FOO": not a valid action for seccomp'),
    ("default-type", {"defaultAction": 5}, f"{D}.defaultAction", "expected a string, got number"),
    ("default-notify", {"defaultAction": "SCMP_ACT_NOTIFY"}, f"{D}.defaultAction",
     "SCMP_ACT_NOTIFY is not supported"),
    ("default-errno-on-allow", {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
     f"{D}.defaultErrnoRet", "SCMP_ACT_ALLOW returns no errno"),
    ("default-errno-range", {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4096},
     f"{D}.defaultErrnoRet", "4096 is out of range (0 to 4095)"),
    ("default-errno-negative", {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1},
     f"{D}.defaultErrnoRet", "out of range"),
    ("default-errno-type", {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "1"},
     f"{D}.defaultErrnoRet", "expected an integer, got string"),
    ("listener-path", _profile(listenerPath="/run/agent.sock"), f"{D}.listenerPath",
     "seccomp notify is not supported"),
    ("listener-metadata", _profile(listenerMetadata="x"), f"{D}.listenerMetadata",
     "seccomp notify is not supported"),
    ("archs-type", _profile(architectures="SCMP_ARCH_X86"), f"{D}.architectures",
     "expected an array, got string"),
    ("arch-unknown", _profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]),
     f"{D}.architectures[1]", 'unknown architecture "SCMP_ARCH_Z80"'),
    ("arch-type", _profile(architectures=[64]), f"{D}.architectures[0]",
     "expected a string, got number"),
    ("flag-unknown", _profile(flags=["SECCOMP_FILTER_FLAG_FOO"]), f"{D}.flags[0]",
     'unknown flag "SECCOMP_FILTER_FLAG_FOO"'),
    ("flag-unsupported", _profile(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]),
     f"{D}.flags[0]", "is not supported by runlog"),
    ("flags-type", _profile(flags={}), f"{D}.flags", "expected an array, got object"),
    ("syscalls-type", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, f"{D}.syscalls",
     "expected an array, got object"),
    ("entry-type", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ["mkdir"]}, S0,
     "expected an object, got string"),
    ("names-missing", _with({"action": "SCMP_ACT_KILL"}), f"{S0}.names",
     "must name at least one syscall"),
    ("names-empty", _with({**KILL, "names": []}), f"{S0}.names", "must name at least one syscall"),
    ("name-empty", _with({**KILL, "names": ["mkdir", ""]}), f"{S0}.names[1]", "must not be empty"),
    ("name-type", _with({**KILL, "names": [None]}), f"{S0}.names[0]", "expected a string"),
    ("action-missing", _with({"names": ["mkdir"]}), f"{S0}.action", "must be specified"),
    ("action-unknown", {"defaultAction": "SCMP_ACT_ALLOW",
                        "syscalls": [KILL, {**KILL, "action": "SCMP_ACT_FOO"}]},
     f"{D}.syscalls[1].action", 'unknown action "SCMP_ACT_FOO"'),
    ("action-notify", _with({**KILL, "action": "SCMP_ACT_NOTIFY"}), f"{S0}.action",
     "SCMP_ACT_NOTIFY is not supported"),
    ("errno-on-kill", _with({**KILL, "errnoRet": 1}), f"{S0}.errnoRet",
     "SCMP_ACT_KILL returns no errno"),
    ("errno-range", _with({**ERR, "errnoRet": 5000}), f"{S0}.errnoRet",
     "5000 is out of range (0 to 4095)"),
    ("trace-range", _with({**ERR, "action": "SCMP_ACT_TRACE", "errnoRet": 65536}),
     f"{S0}.errnoRet", "65536 is out of range (0 to 65535)"),
    ("errno-bool", _with({**ERR, "errnoRet": True}), f"{S0}.errnoRet",
     "expected an integer, got boolean"),
    ("args-type", _with({**KILL, "args": {}}), f"{S0}.args", "expected an array, got object"),
    ("arg-type", _with({**KILL, "args": [1]}), f"{S0}.args[0]", "expected an object, got number"),
    ("op-missing", _arg(index=0), f"{S0}.args[0].op", "must be specified"),
    ("op-unknown", _with({**KILL, "args": [{"op": "SCMP_CMP_EQ"}, {"op": "SCMP_CMP_XOR"}]}),
     f"{S0}.args[1].op", 'unknown operator "SCMP_CMP_XOR": not a valid operator for seccomp'),
    ("index-6", _arg(index=6, op="SCMP_CMP_EQ"), f"{S0}.args[0].index", "at most 6 arguments"),
    ("index-negative", _arg(index=-1, op="SCMP_CMP_EQ"), f"{S0}.args[0].index", "out of range"),
    ("value-range", _arg(value=2**64, op="SCMP_CMP_EQ"), f"{S0}.args[0].value", "out of range"),
    ("value-two-type", _arg(valueTwo="x", op="SCMP_CMP_EQ"), f"{S0}.args[0].valueTwo",
     "expected an integer, got string"),
]
# fmt: on


@pytest.mark.parametrize(
    ("doc", "field", "fragment"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals_name_the_field(doc: Profile, field: str, fragment: str) -> None:
    with pytest.raises(SeccompError) as caught:
        plan(doc)
    err = caught.value
    assert isinstance(err, RunlogError)
    assert err.field == field
    assert fragment in err.problem
    assert str(err) == f"{field}: {err.problem}"
    assert "\n" not in str(err)


def test_an_unknown_action_lists_the_known_ones() -> None:
    with pytest.raises(SeccompError) as caught:
        plan({"defaultAction": "SCMP_ACT_FOO"})
    for name in ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_LOG"):
        assert name in caught.value.problem


# -- config.json: checked when read, and only then imported ------------------------


def _config(seccomp_doc: Profile | None) -> Profile:
    linux: Profile = {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
    if seccomp_doc is not None:
        linux["seccomp"] = seccomp_doc
    return {
        "ociVersion": "1.2.1",
        "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/"},
        "linux": linux,
    }


def test_config_refuses_a_bad_profile_naming_file_and_field() -> None:
    doc = _config(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}],
        }
    )
    with pytest.raises(ConfigError) as caught:
        parse(doc, "/b/config.json")
    assert caught.value.field == "linux.seccomp.syscalls[0].action"
    assert str(caught.value).startswith(
        '/b/config.json: linux.seccomp.syscalls[0].action: unknown action "SCMP_ACT_FOO"'
    )


def test_config_keeps_a_good_profile_as_raw_json() -> None:
    config = parse(_config(_profile()), "/b/config.json")
    assert config.linux.seccomp is not None
    assert plan(config.linux.seccomp) == plan(_profile())
    assert parse(_config(None), "/b/config.json").linux.seccomp is None


def test_the_module_loads_only_for_a_config_with_a_profile() -> None:
    code = (
        "import sys; from engine.oci.config import parse; "
        "parse({cfg!r}, '/b/config.json'); print('engine.linux.seccomp' in sys.modules, "
        "'ctypes' in sys.modules)"
    )
    results = []
    for cfg in (_config(None), _config(_profile())):
        out = subprocess.run(
            [sys.executable, "-c", code.format(cfg=cfg)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        results.append(out.stdout.split())
    # Checking a profile needs the checker only: ctypes and libseccomp load
    # in the monitor, which builds the filter (engine.linux.libseccomp).
    assert results == [["False", "False"], ["True", "False"]]


# -- libseccomp: compile, export, load ---------------------------------------------


def _libseccomp() -> ctypes.CDLL:
    try:
        return ctypes.CDLL("libseccomp.so.2")
    except OSError:
        pytest.skip("libseccomp.so.2 is not installed (make deps installs libseccomp2)")


def _nr(name: str) -> int:
    return int(_libseccomp().seccomp_syscall_resolve_name(name.encode()))


def _program(bpf: bytes) -> list[tuple[int, int]]:
    """(code, k) of each ``struct sock_filter``."""
    assert bpf and len(bpf) % 8 == 0
    return [(code, k) for code, _jt, _jf, k in struct.iter_unpack("=HBBI", bpf)]


BPF_RET_K = 0x06
BPF_JEQ_K = 0x15


def _bpf(doc: Profile) -> bytes:
    got = plan(doc)
    assert got is not None
    with Filter(got) as built:
        return built.export_bpf()


def test_export_bpf_of_a_small_profile() -> None:
    _libseccomp()
    program = _program(_bpf(_profile()))
    assert (BPF_JEQ_K, _nr("mkdir")) in program
    assert (BPF_RET_K, ERRNO | 1) in program
    assert (BPF_RET_K, ALLOW) in program
    # Without the rule neither the syscall nor its errno appears.
    bare = _program(
        _bpf(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}],
            }
        )
    )
    assert (BPF_RET_K, ERRNO | 1) not in bare
    assert (BPF_JEQ_K, _nr("mkdir")) not in bare


def test_args_and_architectures_reach_the_program() -> None:
    _libseccomp()
    args = [{"index": 0, "value": 0xDEAD, "op": "SCMP_CMP_EQ"}]
    doc = _profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
    doc["syscalls"].append(
        {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS", "args": args}
    )
    program = _program(_bpf(doc))
    assert (BPF_JEQ_K, 0xDEAD) in program
    assert (BPF_RET_K, 0x80000000) in program
    if os.uname().machine == "x86_64":
        assert (BPF_JEQ_K, 0x40000003) in program  # AUDIT_ARCH_I386 checked too
        assert len(program) > len(_program(_bpf(_profile())))


def test_unknown_syscalls_are_skipped_as_runc_skips_them() -> None:
    _libseccomp()
    doc = _profile()
    doc["syscalls"].append(
        {"names": ["no_such_syscall", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
    )
    got = plan(doc)
    assert got is not None
    with Filter(got) as built:
        assert built.skipped == ("no_such_syscall",)
        assert built.export_bpf() == _bpf(_profile())


@pytest.mark.parametrize(
    "flags", [["SECCOMP_FILTER_FLAG_LOG"], ["SECCOMP_FILTER_FLAG_TSYNC"], None, []]
)
def test_flags_are_accepted_by_libseccomp(flags: list[str] | None) -> None:
    _libseccomp()
    assert _program(_bpf(_profile(flags=flags)))


def test_an_architecture_libseccomp_does_not_know() -> None:
    _libseccomp()
    odd = Plan(default_action=ALLOW, architectures=("SCMP_ARCH_X86", "SCMP_ARCH_NOPE"))
    with pytest.raises(SeccompError) as caught:
        Filter(odd)
    assert caught.value.field == "linux.seccomp.architectures[1]"
    assert "does not know SCMP_ARCH_NOPE" in caught.value.problem


def test_a_rule_libseccomp_refuses_names_its_entry() -> None:
    _libseccomp()
    bad = Plan(default_action=ALLOW, rules=(Rule("mkdir", ALLOW, (), "linux.seccomp.syscalls[4]"),))
    with pytest.raises(SeccompError) as caught:
        Filter(bad)
    assert caught.value.field == "linux.seccomp.syscalls[4]"
    assert "refuses the rule for mkdir" in caught.value.problem


def test_a_missing_libseccomp_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libseccomp, "_LIBRARY", "libseccomp-runlog-test.so.9")
    got = plan(_profile())
    assert got is not None
    with pytest.raises(SeccompError) as caught:
        Filter(got)
    assert caught.value.field == "linux.seccomp"
    assert caught.value.problem.startswith("libseccomp-runlog-test.so.9 cannot be loaded (")
    assert caught.value.problem.endswith("): install libseccomp2")


def test_a_released_filter_says_so() -> None:
    _libseccomp()
    got = plan(_profile())
    assert got is not None
    built = Filter(got)
    built.release()
    built.release()  # twice is harmless
    with pytest.raises(SeccompError, match="released"):
        built.export_bpf()


def _in_child(body: Callable[[], str]) -> tuple[int, str]:
    """Run ``body`` in a forked child (a filter is for life); its exit status
    and what it returned or raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 0
        try:
            text = body()
        except BaseException as err:
            text, code = f"{type(err).__name__}: {err}", 1
        os.write(write_end, text.encode())
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        text = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def _status(key: str) -> str:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return line.split()[1]
    return ""


def _mkdir_refused(tmp: str) -> Callable[[], str]:
    got = plan(_profile())
    assert got is not None

    def body() -> str:
        with Filter(got) as built:
            built.load()
        try:
            os.mkdir(os.path.join(tmp, "d"))
        except OSError as err:
            mkdir = os.strerror(err.errno)
        else:
            mkdir = "created"
        os.rmdir(tmp)  # other syscalls still work (tmp is empty)
        return f"{mkdir}|seccomp={_status('Seccomp')}|nnp={_status('NoNewPrivs')}"

    return body


def test_load_with_no_new_privs(tmp_path: Path) -> None:
    _libseccomp()
    body = _mkdir_refused(str(tmp_path / "t"))
    os.mkdir(tmp_path / "t")
    libc = ctypes.CDLL(None, use_errno=True)

    def with_nnp() -> str:
        assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
        return body()

    assert _in_child(with_nnp) == (0, "Operation not permitted|seccomp=2|nnp=1")
    assert not (tmp_path / "t").exists()


@pytest.mark.root
def test_load_without_no_new_privs_leaves_it_unset(tmp_path: Path) -> None:
    # libseccomp would set no_new_privs itself; runc (and runlog) turn that off.
    _libseccomp()
    if os.geteuid() != 0:
        pytest.skip("loading without no_new_privs needs CAP_SYS_ADMIN")
    os.mkdir(tmp_path / "t")
    assert _in_child(_mkdir_refused(str(tmp_path / "t"))) == (
        0,
        "Operation not permitted|seccomp=2|nnp=0",
    )


def test_load_without_privilege_is_a_clear_error() -> None:
    _libseccomp()
    got = plan(_profile())
    assert got is not None

    def body() -> str:
        if os.geteuid() == 0:
            os.setresuid(65534, 65534, 65534)  # no CAP_SYS_ADMIN any more
        with Filter(got) as built:
            built.load()
        return "loaded"

    code, text = _in_child(body)
    assert code == 1
    assert text.startswith("SeccompError: linux.seccomp: loading the filter: ")
    assert "needs CAP_SYS_ADMIN" in text


def test_features_match_what_the_plan_accepts() -> None:
    from engine.oci.spec import features

    doc = features()["linux"]["seccomp"]
    for action in doc["actions"]:
        assert plan({"defaultAction": action}) is not None
    for op in doc["operators"]:
        assert plan(_rule(action="SCMP_ACT_KILL", args=[{"op": op}])) is not None
    assert plan(_profile(architectures=doc["archs"])) is not None
    assert plan(_profile(flags=doc["supportedFlags"])) is not None
    assert doc["knownFlags"] == list(seccomp.FLAGS)
