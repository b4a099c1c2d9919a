#!/usr/bin/env python3
"""The Quix Streams peer of cs-pulse's end-to-end benchmark (bench/e2e.py).

Distinct active users per team per day (event time, one hour of grace), written the way a
Quix Streams user would: JSON topic with an event-time extractor, re-key by team, a
tumbling daily window reducing to the set of users, final counts to an output topic. Prints
"DONE <records> <ms>" once it has read the number of usage records it is told to expect.

args: bootstrap usage-topic output-topic consumer-group expected-records guarantee
"""

import os
import sys
import threading
import time
from datetime import timedelta

from quixstreams import Application


def main():
    bootstrap, usage, out, group, expected = sys.argv[1:6]
    guarantee = sys.argv[6] if len(sys.argv) > 6 else "exactly-once"
    expected = int(expected)
    seen = [0]

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee=guarantee,
        commit_interval=0.1 if guarantee == "exactly-once" else 1.0,
        state_dir=f"/tmp/quix-state-{group}",
        loglevel="WARNING",
    )
    source = app.topic(
        usage,
        value_deserializer="json",
        timestamp_extractor=lambda value, headers, ts, ts_type: int(value["occurred_at"]),
    )
    sink = app.topic(out, value_serializer="json")

    def count(value):
        seen[0] += 1

    sdf = app.dataframe(source)
    sdf = sdf.update(count)
    sdf = sdf.filter(lambda v: bool(v.get("user_id")))
    sdf = sdf.group_by("team_id")
    sdf = sdf.apply(lambda v: v["user_id"])
    sdf = (
        sdf.tumbling_window(timedelta(days=1), grace_ms=timedelta(hours=1))
        .reduce(lambda users, user: {**users, user: 1}, lambda user: {user: 1})
        .final()
    )
    sdf = sdf.apply(lambda w: {"start": w["start"], "users": len(w["value"])})
    sdf.to_topic(sink)

    def watch():
        while seen[0] < expected:
            time.sleep(0.05)
        print(f"DONE {seen[0]} {int(time.time() * 1000)}", flush=True)

    threading.Thread(target=watch, daemon=True).start()
    app.run()


if __name__ == "__main__":
    main()
