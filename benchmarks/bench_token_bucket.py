"""The delivery worker's pace: the token bucket (`cdc_offload.sinks.ses.RateLimiter`) shared by 8
threads holds a configured send rate within 5% over a 10-second run (issue 15).

Each thread takes a token and "sends" (no network: the figure is the limiter's own accuracy).
Prints one line per rate and writes benchmarks/results/token_bucket.json.

    PYTHONPATH=. python3 benchmarks/bench_token_bucket.py [--seconds 10] [--threads 8] [--rate 14 --rate 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from pathlib import Path

from cdc_offload.sinks.ses import RateLimiter

RESULTS = Path(__file__).with_name("results") / "token_bucket.json"


def measure(rate: float, threads: int, seconds: float) -> dict[str, float]:
    limiter = RateLimiter(rate)
    stop_at = time.monotonic() + seconds
    counts = [0] * threads
    first_and_last: list[float] = []
    lock = threading.Lock()

    def send(slot: int) -> None:
        while True:
            limiter.wait()
            now = time.monotonic()
            if now >= stop_at:
                return
            counts[slot] += 1
            with lock:
                first_and_last.append(now)

    workers = [threading.Thread(target=send, args=(n,)) for n in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    sends = sum(counts)
    # Over the whole window, as an operator's "sends in 10 s" would count them.
    achieved = sends / (stop_at - started)
    return {
        "configured_per_s": rate,
        "threads": threads,
        "seconds": seconds,
        "sends": sends,
        "achieved_per_s": round(achieved, 3),
        "deviation_pct": round(100 * (achieved - rate) / rate, 3),
        "busiest_thread_share": round(max(counts) / max(1, sends), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rate", type=float, action="append")
    args = parser.parse_args()
    results = [measure(rate, args.threads, args.seconds) for rate in args.rate or [14.0, 100.0]]
    for r in results:
        verdict = "within 5%" if abs(r["deviation_pct"]) <= 5 else "OUTSIDE 5%"
        print(
            f"rate {r['configured_per_s']:g}/s, {r['threads']} threads, {r['seconds']:g} s: {r['sends']:g} sends = "
            f"{r['achieved_per_s']:.2f}/s ({r['deviation_pct']:+.2f}%, {verdict})"
        )
    RESULTS.write_text(json.dumps({"machine": platform.platform(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
