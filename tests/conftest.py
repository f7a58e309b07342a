"""Fixtures: the real embedded stack (Tansu + Redis or Valkey), started once per test session."""

from __future__ import annotations

import pytest

from streams.settings import Settings
from streams.stack import EmbeddedStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """Tansu on a free port and Redis (the local one at RILLET_REDIS_URL, else an embedded Valkey)."""
    workdir = tmp_path_factory.mktemp("stack")
    with EmbeddedStack(Settings.from_env(), broker_port=0, redis="auto", workdir=workdir) as running:
        yield running
