"""Property-based tests of the machine: random request sequences through the engine.

Hypothesis drives the real service (machine, actions with fake drivers,
undo, the SQLite store) with random triggers, init exits and injected
faults, and checks after every step that:

- every history replays, through the compiled table and through
  ``transitions`` itself, without a divergence and to the state the store's
  projection holds;
- a rejected request never changes a container's state, and is rejected
  exactly when the machine does not allow the trigger;
- seq is gapless per container and ids grow.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.actions.fakes import FakeHook, FakeWorld
from engine.actions.registry import REGISTRY
from engine.errors import RunlogError
from engine.eventlog.sqlite import SQLiteStore
from engine.machine.definition import default_path, load
from engine.machine.runtime import Lifecycle
from engine.replay.fold import replay, rows_of
from engine.replay.machines import MachineCatalog
from engine.replay.table import LifecycleStepper, TransitionTable
from engine.service import Service
from engine.status import Actor

MACHINE = load(default_path())
TABLE = TransitionTable.compile(MACHINE)
GONE = frozenset(MACHINE.terminal_states())
IDS = st.sampled_from(("a", "b", "c"))
TRIGGERS = st.sampled_from((*MACHINE.triggers(), "frobnicate"))
FAULTS = st.sampled_from(
    (
        "cgroup.create",
        "process.spawn_init",
        "process.release",
        "cgroup.freeze",
        "cgroup.thaw",
        "hook:createRuntime:/hooks/net",
        "hook:poststart:/hooks/notify",
        "hook:poststop:/hooks/teardown",
    )
)
SIGNALS = st.sampled_from((9, 10, 15))
ACTOR = Actor(0, 1, "cli")


class Lifecycles(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = FakeWorld(
            hooks={
                "createRuntime": [FakeHook("/hooks/net")],
                "poststart": [FakeHook("/hooks/notify")],
                "poststop": [FakeHook("/hooks/teardown")],
            }
        )
        self.store = SQLiteStore(":memory:")
        self.service = Service(self.store, Lifecycle(MACHINE, REGISTRY), self.world.drivers)
        self.requests = 0

    def teardown(self) -> None:
        self.store.close()

    def _state(self, cid: str) -> str | None:
        row = self.store.container(cid)
        return None if row is None else row.state

    @rule(cid=IDS, trigger=TRIGGERS, signo=SIGNALS)
    def request(self, cid: str, trigger: str, signo: int) -> None:
        row = self.store.container(cid)
        before_seq = 0 if row is None else row.seq
        before = self._state(cid)
        args = {"signal": signo} if trigger == "kill" else {}
        try:
            self.service.request(cid, trigger, ACTOR, args)
        except RunlogError:
            pass
        self.requests += 1
        new = self.store.history(cid, after_seq=before_seq)
        assert 1 <= len(new) <= 2  # the request's event, maybe an exit noticed first
        *refresh, last = new
        assert [e.trigger for e in refresh] in ([], ["exit"])
        if refresh and refresh[0].outcome == "ok":
            before = refresh[0].dest
        at = None if before is None or before in GONE else before
        assert last.trigger == trigger and last.source == at
        allowed = TABLE.step(at or MACHINE.initial, trigger) is not None
        # Rejected exactly when the machine does not allow the trigger...
        assert (last.outcome == "rejected") == (not allowed)
        if last.outcome != "ok":
            # ...and a rejected or failed request leaves the state as it was.
            assert last.dest is None
            assert self._state(cid) == before

    @rule(cid=IDS, code=st.integers(0, 255))
    def init_exits(self, cid: str, code: int) -> None:
        process = self.world.process(cid)
        if process.pid is not None and process.exited is None:
            process.exit(code)

    @rule(cid=IDS, what=FAULTS)
    def inject_fault(self, cid: str, what: str) -> None:
        self.world.fail(cid, what)

    @precondition(lambda self: bool(self.world.faults))
    @rule()
    def heal(self) -> None:
        self.world.faults.clear()

    @invariant()
    def seq_is_gapless_and_ids_grow(self) -> None:
        events = self.store.events()
        assert [e.id for e in events] == sorted({e.id for e in events})
        seqs: dict[str, list[int]] = {}
        for e in events:
            seqs.setdefault(e.container_id, []).append(e.seq)
        for found in seqs.values():
            assert found == list(range(1, len(found) + 1))

    @invariant()
    def every_history_replays_to_the_projection(self) -> None:
        rows = rows_of(self.store.events())
        for compile_ in (TransitionTable.compile, LifecycleStepper):
            catalog = MachineCatalog(current=lambda: MACHINE, compile=compile_)
            result = replay(rows, catalog)
            assert [d.message() for h in result.divergent for d in h.divergences] == []
            for cid, history in result.histories.items():
                assert history.state == self._state(cid), cid


TestLifecycles = Lifecycles.TestCase
TestLifecycles.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
