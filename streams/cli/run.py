"""Commands that run things: `up` (the embedded stack), `worker`, `publish`, `demo`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from streams.cli.common import chosen_views, features_path_of, view_named
from streams.errors import ConfigError
from streams.settings import Settings, redact_url

__all__ = ["cmd_demo", "cmd_publish", "cmd_up", "cmd_worker"]


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from streams.stack.embedded import EmbeddedStack

    stopped = threading.Event()  # handlers first: a signal during start-up must still clean up
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    mode = args.redis
    if mode == "auto" and not os.environ.get("RILLET_REDIS_URL"):
        mode = "embedded"  # a Redis that merely answers on the default port is somebody else's: never fill it
    stack = EmbeddedStack(settings, broker_port=args.broker_port, redis=mode, workdir="data/stack",
                          registry=True, persist_redis=True)
    stack.start()
    for note in stack.notes:
        print(note)
    print(f"export RILLET_BOOTSTRAP_SERVERS={stack.settings.bootstrap_servers}")
    print(f"export RILLET_REDIS_URL={redact_url(stack.settings.redis_url)}")
    if stack.settings.schema_registry_url:
        print(f"export RILLET_SCHEMA_REGISTRY_URL={stack.settings.schema_registry_url}")
    print("running; Ctrl-C stops what was started", flush=True)
    try:
        while not stopped.wait(0.5):
            if any(not p.alive() for p in stack.processes):
                dead = [p.name for p in stack.processes if not p.alive()]
                print(f"rillet: error: {', '.join(dead)} exited", file=sys.stderr)
                return 1
    finally:
        stack.close()
    return 0

def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import faust
    import uvloop

    from streams.broker.predecessors import forget_dead_predecessors
    from streams.broker.topics import ensure_topics
    from streams.worker.app import build_app

    uvloop.install()  # Faust's per-event path runs on the event loop: uvloop made it 1.3x faster
    if args.web_port:
        settings = settings.with_(web_port=args.web_port)
    settings = free_web_port(settings, explicit=bool(args.web_port) or "RILLET_WEB_PORT" in os.environ)
    views = chosen_views(args, settings)
    ensure_topics(settings, views)
    removed = forget_dead_predecessors(settings.state_dir, settings.bootstrap_servers)
    if removed:  # a restart on this machine: the group rebalances now, not when the dead member's session ends
        logging.getLogger("rillet").info(json.dumps({"event": "dead_predecessors_removed", "members": removed}))
    logging.getLogger("rillet").info(json.dumps({"event": "worker_start", "views": [v.describe() for v in views],
                                                 "settings": settings.safe_view()}))
    app = build_app(settings, views)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()  # exits the process when stopped
    return 0

def free_web_port(settings: Settings, *, explicit: bool) -> Settings:
    """The worker's web port: the configured one, or, where the default is taken (a second worker on this
    host), a free one, said in the log. A port the user chose that is taken is a one-line error."""
    import socket

    def free(port: int) -> bool:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds: TIME_WAIT is free
            try:
                probe.bind((settings.web_host, port))
            except OSError:
                return False
        return True

    if free(settings.web_port):
        return settings
    if explicit:
        raise ConfigError(f"RILLET_WEB_PORT={settings.web_port}: the port is taken on {settings.web_host} (another "
                          "worker?); set RILLET_WEB_PORT to a free port, or leave it unset to have one picked")
    with socket.socket() as probe:
        probe.bind((settings.web_host, 0))
        port = probe.getsockname()[1]
    logging.getLogger("rillet").warning(json.dumps({
        "event": "web_port_taken", "taken": settings.web_port, "web_port": port,
        "message": f"port {settings.web_port} is taken (another worker on this host?): /health and /metrics "
                   f"are on port {port}; set RILLET_WEB_PORT to choose"}))
    return settings.with_(web_port=port)

def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from streams.broker.producer import EventProducer
    from streams.broker.topics import ensure_topics

    view = view_named(chosen_views(args, settings), args.view)
    if os.path.isdir(args.file):
        raise ConfigError(f"--file {args.file!r} is a directory; name a JSON-lines file")
    if not os.path.isfile(args.file):
        raise ConfigError(f"--file {args.file!r} does not exist")
    ensure_topics(settings, [view])
    with EventProducer(settings, view) as producer:
        prepared = producer.prepare_jsonl(args.file)  # the whole file is checked before anything is sent
        if prepared.invalid and not args.skip_invalid:
            more = f" (and {len(prepared.invalid) - 1} more bad lines)" if len(prepared.invalid) > 1 else ""
            raise ConfigError(f"{prepared.invalid[0]}{more}; nothing was sent: fix the file, "
                              "or --skip-invalid to send the valid lines")
        for event in prepared.events:
            producer.send_encoded(event)
    report = producer.report
    print(json.dumps({"view": view.name, "topic": view.topic, "lines": prepared.lines, "sent": report.sent,
                      "failed": report.failed, "invalid": len(prepared.invalid), "errors": prepared.invalid[:5]
                      + report.errors[:5]}))
    if report.failed:
        print(f"rillet: error: {report.failed} of {len(prepared.events)} events were not delivered "
              f"({report.errors[0] if report.errors else 'no reason given'}); {report.sent} were", file=sys.stderr)
        return 1
    return 0

def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.demo import run_demo

    path = features_path_of(args, settings)
    views = chosen_views(args, settings)
    return run_demo(settings, views, path, users=args.users, events=args.events, hours=args.hours,
                    follow=args.follow)
