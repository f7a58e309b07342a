"""A Faust agent that does nothing with each event: the framework's own per-event ceiling.

    python -m bench.faust_minimal TOPIC EXPECTED   (prints `DONE first_ts last_ts count`)
"""

from __future__ import annotations

import os
import sys
import tempfile

import faust

from bench.done_counter import DoneCounter
from streams.broker.tansu import FAUST_GROUP_TIMING, shorten_faust_fetch_wait

topic_name, expected = sys.argv[1], int(sys.argv[2])
shorten_faust_fetch_wait(50)
app = faust.App(f"bench-minimal-{os.getpid()}", broker=f"kafka://{os.environ['RILLET_BOOTSTRAP_SERVERS']}",
                autodiscover=False, consumer_auto_offset_reset="earliest", web_enabled=False,
                store="memory://", datadir=tempfile.mkdtemp(prefix="rillet-bench-faust-"), **FAUST_GROUP_TIMING)
topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
counter = DoneCounter(expected)


@app.agent(topic)
async def count(stream):
    async for _ in stream:
        counter.tick()


if __name__ == "__main__":
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
