"""The HTTP API under load, against the local Apache Kafka broker.

Run it with `bash bench/api.sh` (which builds cs-pulse in release and starts the broker).
Two phases, each on fresh topics (4 partitions per input) and one `cs-pulse run`
(exactly-once), 10,000 accounts of 5 teams. Each first loads two simulated days of history
ending at today's midnight (so every account has been evaluated and has a view), then
events stamped with the wall clock (`gen --live`: hourly ticks come once an hour, as in
production):

  steady   `gen --live` offers 50,000 events/s while cs-pulse consumes them. Windows of API
           load (100 GET /v1/accounts/{id} per second, random accounts) alternate with
           windows without: the request latencies (p50, p99, max), and cs-pulse's events/s
           and CPU seconds per million events in each kind of window.
  backlog  the live events preloaded before cs-pulse starts, then drained as fast as it
           can, with the same alternation: the drop in drain rate is what answering costs
           ingest when ingest is the bottleneck.

The API's client is this script (Python threads, one connection per request), so its
latencies include connection set-up. Everything shares two cores.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "cs-pulse")


def log(msg):
    print(f"[api {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def gen(config, args, rate=None, wait=True, live=False, events=None):
    cmd = [BIN, "gen", "--config", config, "--accounts", str(args.accounts), "--teams", "5",
           "--users", str(args.users), "--seed", "9"]
    if live:
        cmd += ["--live", "--days", "3650"]
    else:
        midnight = int(time.time()) // 86400 * 86400 * 1000
        cmd += ["--days", "2", "--start", str(midnight - 2 * 86_400_000)]
    if rate:
        cmd += ["--rate", str(rate)]
    if events:
        cmd += ["--events", str(events)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if wait:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"gen failed: {err}")
    return p


def start_run(config, logfile):
    f = open(logfile, "w")
    env = dict(os.environ, RUST_LOG="warn")
    return subprocess.Popen([BIN, "run", "--config", config], stdout=f, stderr=f, env=env)


def wait_accounts(port, n, within, proc):
    deadline = time.time() + within
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("cs-pulse run exited")
        try:
            if get_json(port, "/v1/accounts?limit=1")["count"] >= 1:
                ids = [a["account_id"] for a in get_json(port, "/v1/accounts")["accounts"]]
                if len(ids) >= n:
                    return ids
        except Exception:
            pass
        time.sleep(1)
    raise SystemExit(f"not every account answered within {within} s")


class Load:
    """Sends `rate` GETs per second for random accounts while on; keeps the latencies."""

    def __init__(self, port, ids, rate):
        self.port, self.ids, self.rate = port, ids, rate
        self.on = False
        self.stop = False
        self.latencies = []
        self.errors = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def one(self, account):
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/accounts/{account}", timeout=10) as r:
                r.read()
                ok = r.status == 200
        except Exception:
            ok = False
        ms = (time.perf_counter() - t) * 1000
        with self.lock:
            if ok:
                self.latencies.append(ms)
            else:
                self.errors += 1

    def loop(self):
        rng = random.Random(1)
        next_at = time.perf_counter()
        while not self.stop:
            if not self.on:
                time.sleep(0.01)
                next_at = time.perf_counter()
                continue
            next_at += 1.0 / self.rate
            threading.Thread(target=self.one, args=(rng.choice(self.ids),), daemon=True).start()
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)


def windows(port, pid, load, count, seconds, warmup):
    """Alternates windows without and with API load: (on, events/s, CPU s per million).
    The first `warmup` windows (the ticks that catch up after the history) are not kept."""
    out = []
    for i in range(count + warmup):
        if i == warmup:
            with load.lock:
                load.latencies.clear()
                load.errors = 0
        load.on = i % 2 == 1
        e0, (c0, _) = e2e.metric_sum(port, "cs_pulse_events_total"), e2e.proc_usage(pid)
        t0 = time.time()
        time.sleep(seconds)
        e1, (c1, _) = e2e.metric_sum(port, "cs_pulse_events_total"), e2e.proc_usage(pid)
        dt = time.time() - t0
        n = (e1 or 0) - (e0 or 0)
        if i >= warmup:
            out.append((load.on, n / dt, (c1 - c0) / max(n, 1) * 1e6))
        log(f"window {i}: api {'on ' if load.on else 'off'} {n / dt:,.0f} events/s{' (warm-up)' if i < warmup else ''}")
    load.on = False
    return out


def summary(rows):
    def mean(on, k):
        v = [r[k] for r in rows if r[0] == on]
        return statistics.mean(v) if v else float("nan")
    off, on = mean(False, 1), mean(True, 1)
    return {"events_per_s_off": off, "events_per_s_on": on, "drop": (off - on) / off if off else float("nan"),
            "cpu_s_per_million_off": mean(False, 2), "cpu_s_per_million_on": mean(True, 2)}


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, round(p / 100 * len(v) + 0.5) - 1))] if v else float("nan")


def phase(args, name, backlog):
    prefix = f"bench-api-{name}-{os.getpid()}"
    port = e2e.free_port()
    config = f"/tmp/{prefix}.toml"
    with open(config, "w") as f:
        f.write(e2e.config_text(args.bootstrap, prefix, f"{prefix}-g", port, "exactly_once"))
    e2e.create_topics(args.bootstrap, prefix, 4)
    try:
        producer = None
        log(f"{name}: loading two days of history")
        gen(config, args)
        if backlog:
            log(f"{name}: preloading {args.backlog:,} live events")
            gen(config, args, live=True, events=args.backlog)
        run = start_run(config, f"/tmp/{prefix}.log")
        try:
            ids = wait_accounts(port, args.accounts, 900, run)
            log(f"{name}: {len(ids):,} accounts answered")
            if not backlog:
                log(f"{name}: gen offers {args.rate:,} live events/s")
                producer = gen(config, args, rate=args.rate, wait=False, live=True)
                time.sleep(args.window_seconds)
            load = Load(port, ids, args.api_rate)
            rows = windows(port, run.pid, load, args.windows, args.window_seconds, args.warmup_windows)
            load.stop = True
            time.sleep(1)
            with load.lock:
                lat = list(load.latencies)
                errors = load.errors
            _, rss = e2e.proc_usage(run.pid)
            s = summary(rows)
            s.update({"requests": len(lat), "errors": errors, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                      "max_ms": max(lat) if lat else float("nan"), "peak_rss_mib": rss})
            return s
        finally:
            run.terminate()
            run.wait(60)
            if producer is not None:
                producer.kill()
                producer.wait()
    finally:
        e2e.delete_topics(args.bootstrap, prefix)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=2, help="users per team")
    ap.add_argument("--backlog", type=int, default=8_000_000, help="live events preloaded in the backlog phase")
    ap.add_argument("--rate", type=int, default=50_000, help="events/s offered in the steady phase")
    ap.add_argument("--api-rate", type=int, default=100, help="API requests per second while on")
    ap.add_argument("--windows", type=int, default=8, help="windows measured, half of them with API load")
    ap.add_argument("--warmup-windows", type=int, default=2, help="windows run first and not measured")
    ap.add_argument("--window-seconds", type=float, default=12.0)
    ap.add_argument("--only", default="steady,backlog")
    args = ap.parse_args()
    results = {}
    for name in args.only.split(","):
        results[name] = phase(args, name, backlog=(name == "backlog"))
    print("| phase | requests | errors | p50 ms | p99 ms | max ms | events/s without API load | with | drop | CPU s/M events without | with | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in results.items():
        print(f"| {name} | {s['requests']:,} | {s['errors']} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.1f} | "
              f"{s['events_per_s_off']:,.0f} | {s['events_per_s_on']:,.0f} | {s['drop'] * 100:.1f} % | "
              f"{s['cpu_s_per_million_off']:.2f} | {s['cpu_s_per_million_on']:.2f} | {s['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
