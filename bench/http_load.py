"""Open-loop HTTP load from its own process: `python -m bench.http_load URL RATE SECONDS BODY_FILE`.

Requests start on a fixed schedule (not when the previous one returns), so a
slow server shows up as latency rather than as a lower rate. Prints a JSON
line with the sent count, errors and latency percentiles in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main(url: str, rate: float, seconds: float, body: bytes) -> None:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        # warm up for a second (connections, caches); not recorded
        warm = [session.post(url, data=body, headers={"Content-Type": "application/json"}) for _ in range(50)]
        for request in warm:
            async with request as reply:
                await reply.read()

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as reply:
                    await reply.read()
                    if reply.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        begin = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    print(json.dumps({"sent": total, "errors": errors, "achieved_rps": total / elapsed,
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": latencies[-1]}))


if __name__ == "__main__":
    url, rate, seconds, body_file = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    with open(body_file, "rb") as handle:
        asyncio.run(main(url, rate, seconds, handle.read()))
