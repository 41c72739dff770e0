"""The hash chain of a log: each event carries the hash of the one before.

An event's hash is sha256 over its predecessor's hash and the canonical
bytes of its fields (:data:`engine.eventlog.sql.CHAINED_COLUMNS`, as
stored: the payload is its JSON text). Each field is written as
``LENGTH:TEXT`` (``~`` for NULL), so no two different rows share bytes.
The first event of a log follows :data:`GENESIS`; after a prune, the first
event left follows the anchor (``chain_anchors``).

On the hot path: C sha256 alone (hashlib's OpenSSL backend costs 2 ms to
import; the digest is the same).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from hashlib import sha256
    from typing import Any
else:
    from _sha256 import sha256

__all__ = ["GENESIS", "Break", "canonical", "link", "verify_rows"]

GENESIS = "0" * 64


def canonical(values: Sequence[Any]) -> bytes:
    """The bytes a row's chained fields hash as."""
    return "".join(
        "~" if value is None else f"{len(text := str(value))}:{text}" for value in values
    ).encode("utf-8", "surrogatepass")


def link(prev_hash: str, values: Sequence[Any]) -> str:
    """The hash of an event with chained fields ``values`` after ``prev_hash``."""
    return sha256(prev_hash.encode() + canonical(values)).hexdigest()


class Break:
    """The first broken link of a chain: where, and what is wrong."""

    __slots__ = ("position", "problem")

    def __init__(self, position: int, problem: str) -> None:
        self.position = position  # the event's id in its log
        self.problem = problem

    def __repr__(self) -> str:
        return f"Break({self.position}, {self.problem!r})"


def verify_rows(
    rows: Iterable[tuple[int, Sequence[Any], str | None, str | None]],
    start: str = GENESIS,
    after_id: int = 0,
    size: list[int] | None = None,
) -> tuple[int, str, Break | None]:
    """Walk ``(id, chained values, prev_hash, hash)`` rows in id order.

    Returns how many verified, the last hash, and the first break if any:
    an event whose stored hash is not its content's (edited), or whose
    ``prev_hash`` is not the previous event's hash (one removed, inserted
    or reordered before it). ``size[0]`` adds up the canonical bytes walked.
    """
    last, last_id, count = start, after_id, 0
    for event_id, values, prev_hash, stored in rows:
        if prev_hash != last:
            what = "the log's start" if last_id == after_id and count == 0 else f"event {last_id}"
            return (
                count,
                last,
                Break(
                    event_id,
                    f"event {event_id}: its prev_hash does not match {what} "
                    "(an event before it was removed, inserted or altered)",
                ),
            )
        data = canonical(values)
        computed = sha256(last.encode() + data).hexdigest()
        if size is not None:
            size[0] += len(data)
        if stored != computed:
            return (
                count,
                last,
                Break(event_id, f"event {event_id}: its content does not match its hash (altered)"),
            )
        last, last_id, count = computed, event_id, count + 1
    return count, last, None
