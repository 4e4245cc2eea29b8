"""Replay: play the kernel's side of a recorded session against a live daemon (design.md §6).

:mod:`~fusetrace.replay.engine` is the sans-IO engine (events in, commands out),
:mod:`~fusetrace.replay.matching` the comparison policy, :mod:`~fusetrace.replay.codec` the
frame knowledge the engine asks for (all of it read from the protocol registry), and
:mod:`~fusetrace.replay.driver` the socket and process I/O around them.
"""
