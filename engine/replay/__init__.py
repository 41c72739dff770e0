"""Replay: recorded histories run back through a machine definition.

A history's events say which trigger was asked for, in which state, and
what came of it. Replaying them through a machine with side effects off
answers two questions: where was the container at any point (fold), and
does this machine still accept every recorded transition and reach the
recorded state (verify) — for the machine each history was recorded with,
or for a changed ``statemachine.yaml`` before it is deployed.

Modules: :mod:`~engine.replay.table` compiles a machine for replay;
:mod:`~engine.replay.machines` finds the machine a digest names;
:mod:`~engine.replay.fold` replays and reports divergences;
:mod:`~engine.replay.fixtures` writes and reads histories as JSON-lines
files; :mod:`~engine.replay.pytest_plugin` makes them pytest tests;
:mod:`~engine.replay.progress` draws a progress bar.
"""
