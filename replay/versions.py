"""Moved to `sinks.versions` (the version registry is read by the worker, the reads, restore, the console
and status, all below `replay/`); this name stays for code that imports it from here."""

from sinks.versions import *  # noqa: F403
from sinks.versions import __all__  # noqa: F401
