"""The pure kernel: windows, aggregations, the window engine, point-in-time evaluation, batch rules.

Everything here is computation: no broker, no Redis, no files, no clock of its
own (tests/streams/kernel/test_purity.py checks the imports). Every path that
produces or reads a feature value drives it: the live worker and the replay
(`processor`, `engine.apply`), the online read (`engine.as_of`) and the offline
point-in-time join (`point_in_time`). The Faust app, the CLI and the process
plumbing live beside it in `streams/`; the stores in `sinks/`.
"""
