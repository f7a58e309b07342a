"""A Faust agent that does nothing with each event: the framework's own per-event ceiling.

    python -m bench.faust_minimal TOPIC EXPECTED   (prints `DONE first_ts last_ts count`)
"""

from __future__ import annotations

import os
import sys
import time

import faust

from streams.tansu import FAUST_GROUP_TIMING, shorten_faust_fetch_wait

topic_name, expected = sys.argv[1], int(sys.argv[2])
shorten_faust_fetch_wait(50)
app = faust.App(f"bench-minimal-{os.getpid()}", broker=f"kafka://{os.environ['RILLET_BOOTSTRAP_SERVERS']}",
                autodiscover=False, consumer_auto_offset_reset="earliest", web_enabled=False,
                store="memory://", **FAUST_GROUP_TIMING)
topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
state = {"n": 0, "first": 0.0}


@app.agent(topic)
async def count(stream):
    async for _ in stream:
        state["n"] += 1
        if state["n"] == 1:
            state["first"] = time.time()
        if state["n"] == expected:
            print(f"DONE {state['first']} {time.time()} {state['n']}", flush=True)
            os._exit(0)


if __name__ == "__main__":
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
