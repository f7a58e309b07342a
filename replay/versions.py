"""Moved to `sinks.online.versions` (the version registry is read by the worker, the reads, restore, the console
and status, all below `replay/`); this name stays for code that imports it from here."""

from sinks.online.versions import *  # noqa: F403
from sinks.online.versions import __all__  # noqa: F401
