"""Action names bound to their implementations.

The catalog (:mod:`engine.actions.catalog`) says which names and parameters
exist; this registry says which code runs for each. A test checks they list
the same names.
"""

from __future__ import annotations

from types import MappingProxyType

from engine.actions.base import Action
from engine.actions.cgroup import (
    CgroupCreate,
    CgroupDestroy,
    CgroupFreeze,
    CgroupThaw,
    CgroupUpdate,
)
from engine.actions.criu import CriuDump, CriuRestore
from engine.actions.hook import Hook
from engine.actions.process import CollectStatus, ConfirmExec, Release, Signal, SpawnInit
from engine.actions.state import StateRemove

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["REGISTRY"]

REGISTRY: Mapping[str, Action] = MappingProxyType(
    {
        action.name: action
        for action in (
            CgroupCreate(),
            CgroupDestroy(),
            CgroupFreeze(),
            CgroupThaw(),
            CgroupUpdate(),
            CriuDump(),
            CriuRestore(),
            SpawnInit(),
            Release(),
            ConfirmExec(),
            Signal(),
            CollectStatus(),
            Hook(),
            StateRemove(),
        )
    }
)
