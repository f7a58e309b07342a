"""The `rillet` command line: up, worker, publish, get, historical, serve, dlq, demo, schemas, registry.

A bad argument or a failure the user can fix prints one line and exits
non-zero (2 for usage, 1 for runtime); tracebacks are for bugs only.
"""

from __future__ import annotations

import logging
import sys
import warnings

from streams.cli.change import cmd_diff, cmd_plan, cmd_promote, cmd_rollback
from streams.cli.operate import cmd_dlq, cmd_registry, cmd_replay, cmd_restore, cmd_schemas, cmd_status, cmd_versions
from streams.cli.parser import build_parser
from streams.cli.read import cmd_get, cmd_historical, cmd_land_served, cmd_serve, cmd_skew
from streams.cli.run import cmd_demo, cmd_publish, cmd_up, cmd_worker
from streams.errors import RilletError
from streams.settings import Settings, redact_url

__all__ = ["main"]


COMMANDS = {"up": cmd_up, "worker": cmd_worker, "publish": cmd_publish, "get": cmd_get, "demo": cmd_demo,
            "schemas": cmd_schemas, "registry": cmd_registry, "serve": cmd_serve,
            "dlq": cmd_dlq, "restore": cmd_restore, "historical": cmd_historical, "replay": cmd_replay,
            "versions": cmd_versions, "status": cmd_status, "skew": cmd_skew,
            "land-served": cmd_land_served, "plan": cmd_plan, "promote": cmd_promote, "rollback": cmd_rollback,
            "diff": cmd_diff}


def main(argv: list[str] | None = None) -> int:
    # confluent-kafka's registry client imports authlib's deprecated httpx integration: not ours to fix
    warnings.filterwarnings("ignore", message=".*httpx module is deprecated.*")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    parser.check_flags(argv)
    args = parser.parse_args(argv)
    settings = None
    try:
        settings = Settings.from_env()
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
        for chatty in ("httpx", "httpx2", "httpcore"):  # one INFO line per registry request is noise
            logging.getLogger(chatty).setLevel(logging.WARNING)
        return COMMANDS[args.command](args, settings)
    except RilletError as exc:
        print(f"rillet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rillet: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = _service_failure(exc, settings)
        if message is None:
            raise  # a bug: the traceback is wanted
        print(f"rillet: error: {message}", file=sys.stderr)
        return 1


def _service_failure(exc: Exception, settings: Settings | None) -> str | None:
    """One line for a service that is down or refuses, whichever command met it; None for anything else."""
    import redis
    from confluent_kafka import KafkaException

    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        where = redact_url(settings.redis_url) if settings else "RILLET_REDIS_URL"
        reason = str(exc).split(". ")[0].strip() or type(exc).__name__
        return (f"Redis at {where} does not answer ({reason}); start it (rillet up) or point "
                "RILLET_REDIS_URL at one")
    if isinstance(exc, redis.AuthenticationError | redis.ResponseError):
        return f"Redis refused the request: {exc}"
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args else exc
        where = settings.bootstrap_servers if settings else "RILLET_BOOTSTRAP_SERVERS"
        text = error.str() if hasattr(error, "str") else str(error)
        return f"broker at {where}: {text}"
    return None
