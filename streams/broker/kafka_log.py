"""librdkafka's log, through rillet's logger, one line per problem.

Left alone, a confluent-kafka client writes librdkafka's log straight to
stderr: with the broker down that is a `FAIL` line per connection attempt,
about 200 in ten seconds, before rillet's own one-line error. Every client
rillet creates takes its configuration from `client_config`, which hands
librdkafka a Python logger instead; a filter lets each distinct problem
through once per process (the same message with other numbers is the same
problem), at WARNING, so `RILLET_LOG_LEVEL=error` silences it entirely.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["client_config", "kafka_logger"]

_NUMBERS = re.compile(r"\d+")


class _OncePerProblem(logging.Filter):
    """Pass the first record of each problem; a problem is the message with its numbers blanked."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # "[thrd:127.0.0.1:9/bootstrap]: ... Connect ... failed: Connection refused (after 0ms in state CONNECT)"
        problem = _NUMBERS.sub("#", message.split("]: ", 1)[-1])
        if problem in self._seen:
            return False
        self._seen.add(problem)
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def kafka_logger() -> logging.Logger:
    """The logger every librdkafka client of this process writes to (`rillet.kafka`)."""
    logger = logging.getLogger("rillet.kafka")
    if not any(isinstance(f, _OncePerProblem) for f in logger.filters):
        logger.addFilter(_OncePerProblem())
    return logger


def client_config(bootstrap_servers: str, **extra: Any) -> dict[str, Any]:
    """A confluent-kafka client configuration whose log goes through `kafka_logger()`.

    Args:
        bootstrap_servers: the brokers, host:port, comma separated.
        **extra: any librdkafka setting, with `.` spelled as in librdkafka (pass a dict via `**{...}`).
    """
    return {"bootstrap.servers": bootstrap_servers, "logger": kafka_logger(), **extra}
