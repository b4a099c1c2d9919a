#!/usr/bin/env python3
"""cs-pulse's end-to-end benchmark against the local Apache Kafka broker.

Run it with `bash bench/run.sh` (which builds everything and starts the broker). It
preloads one topic pair with `cs-pulse gen`, then runs each contender alone on the same
records, pinned to one core (`taskset`), with the broker pinned to the other:

  ceiling         a librdkafka consumer (Rust) that only reads and counts the records
  cs-pulse EOS    `cs-pulse run`, processing.guarantee = exactly_once
  cs-pulse ALO    `cs-pulse run`, processing.guarantee = at_least_once
  cs-pulse live   exactly_once again, on a second preload whose event times are the
                  wall clock (`gen --live`): hourly ticks then come once an hour, as in
                  production, instead of once per ~100,000 records of simulated days
  Kafka Streams   distinct active users per team per day (bench/kstreams), exactly_once_v2
  Quix Streams    the same aggregation (bench/quix), exactly-once

and prints events/s, the ratio to the ceiling, CPU seconds per million events and peak
RSS for each. A second phase measures alert latency: `gen` produces at a steady rate
while `cs-pulse run` (exactly-once) is running, and a read_committed consumer times each
P1 ticket from its append (LogAppendTime) to its support_escalation alert.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/cs-pulse")
CEILING = os.path.join(ROOT, "target/release/examples/ceiling")
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_usage(pid):
    """CPU seconds (user + system) and peak RSS (MiB) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


def config_text(bootstrap, prefix, group, port, guarantee):
    return f"""[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
[topics]
usage = "{prefix}.usage"
support = "{prefix}.support"
accounts = "{prefix}.accounts"
teams = "{prefix}.teams"
alerts = "{prefix}.alerts"
scores = "{prefix}.scores"
deadletter = "{prefix}.deadletter"
[time]
idle_timeout_secs = 5
[adoption]
key_features = ["dashboards", "alerts", "deploys", "api"]
[processing]
guarantee = "{guarantee}"
[metrics]
bind = "127.0.0.1:{port}"
"""


def create_topics(bootstrap, prefix, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    compact = {"cleanup.policy": "compact"}
    specs = [
        NewTopic(f"{prefix}.usage", partitions, 1),
        NewTopic(f"{prefix}.support", partitions, 1, config={"message.timestamp.type": "LogAppendTime"}),
        NewTopic(f"{prefix}.accounts", 1, 1, config=compact),
        NewTopic(f"{prefix}.teams", 1, 1, config=compact),
        NewTopic(f"{prefix}.alerts", partitions, 1),
        NewTopic(f"{prefix}.scores", partitions, 1, config=compact),
        NewTopic(f"{prefix}.deadletter", partitions, 1),
        NewTopic(f"{prefix}.peer-out", partitions, 1),
    ]
    for name, fut in admin.create_topics(specs).items():
        fut.result()
    time.sleep(2)


def delete_topics(bootstrap, prefix):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for fut in admin.delete_topics(names).values():
            try:
                fut.result()
            except Exception:
                pass


def record_count(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-count"})
    md = c.list_topics(topic, timeout=10)
    n = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.topics[topic].partitions)
    c.close()
    return n


def metric_sum(port, name):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except Exception:
        return None
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_contender(name, cmd, events, core, done, logdir, env=None, timeout=3600):
    """Starts `cmd` on `core`; `done(p, out_lines)` says when it has processed every record."""
    log(f"{name}: starting")
    out_path = os.path.join(logdir, name.replace(" ", "_") + ".log")
    lines = []
    with open(out_path, "w") as logf:
        start = time.time()
        p = subprocess.Popen(["taskset", "-c", str(core)] + cmd, stdout=subprocess.PIPE, stderr=logf, text=True, env=env)

        def pump():
            for line in p.stdout:
                lines.append(line)
                logf.write(line)

        threading.Thread(target=pump, daemon=True).start()
        result = None
        while time.time() - start < timeout:
            if p.poll() is not None:
                break
            if done(p, lines):
                seconds = time.time() - start
                cpu, rss = proc_usage(p.pid)
                result = {"name": name, "events": events, "seconds": seconds, "cpu": cpu, "rss_mib": rss}
                break
            time.sleep(0.05)
        stop(p)
    if result is None:
        log(f"{name}: did not finish; see {out_path}")
        return {"name": name, "events": events, "error": f"did not finish (log: {out_path})"}
    log(f"{name}: {events} events in {result['seconds']:.1f} s ({events / result['seconds']:,.0f}/s)")
    return result


def ceiling(bootstrap, prefix, events, core, logdir):
    name = "ceiling (rdkafka read+count)"
    out_path = os.path.join(logdir, "ceiling.log")
    log(f"{name}: starting")
    start = time.time()
    p = subprocess.Popen(
        ["taskset", "-c", str(core), CEILING, bootstrap, f"{prefix}.usage", f"{prefix}.support"],
        stdout=subprocess.PIPE,
        stderr=open(out_path, "w"),
        text=True,
    )
    _, status, rusage = os.wait4(p.pid, 0)
    seconds = time.time() - start
    out = p.stdout.read()
    p.returncode = status
    info = json.loads(out.strip().splitlines()[-1])
    if info["records"] != events:
        log(f"ceiling read {info['records']} records, expected {events}")
    log(f"{name}: {events} events in {seconds:.1f} s")
    return {
        "name": name,
        "events": info["records"],
        "seconds": seconds,
        "cpu": rusage.ru_utime + rusage.ru_stime,
        "rss_mib": rusage.ru_maxrss / 1024,
    }


def cs_pulse(bootstrap, prefix, events, core, logdir, guarantee, note=""):
    port = free_port()
    cfg = os.path.join(logdir, f"cs-pulse-{prefix}-{guarantee}.toml")
    with open(cfg, "w") as f:
        f.write(config_text(bootstrap, prefix, f"{prefix}-{guarantee}", port, guarantee))
    env = dict(os.environ, RUST_LOG="warn")
    label = ("cs-pulse exactly_once" if guarantee == "exactly_once" else "cs-pulse at_least_once") + note

    def done(p, lines):
        n = metric_sum(port, "cs_pulse_events_total")
        return n is not None and n >= events

    return run_contender(label, [BIN, "run", "--config", cfg], events, core, done, logdir, env=env)


def done_line(p, lines):
    return any(line.startswith("DONE ") for line in lines)


def kstreams(bootstrap, prefix, usage_events, core, logdir):
    jar_dir = os.path.join(ROOT, "bench/kstreams/target")
    cp = ":".join([os.path.join(jar_dir, "kstreams-peer-1.jar")] + [
        os.path.join(jar_dir, "lib", j) for j in sorted(os.listdir(os.path.join(jar_dir, "lib")))
    ])
    cmd = [
        "java", "-XX:ActiveProcessorCount=1", "-cp", cp, "cspulse.bench.DistinctUsers", bootstrap,
        f"{prefix}.usage", f"{prefix}.peer-out", f"{prefix}-kstreams", str(usage_events), "exactly_once_v2",
    ]
    return run_contender("Kafka Streams exactly_once_v2", cmd, usage_events, core, done_line, logdir)


def quix(bootstrap, prefix, usage_events, core, logdir, python):
    cmd = [
        python, os.path.join(ROOT, "bench/quix/distinct_users.py"), bootstrap, f"{prefix}.usage",
        f"{prefix}.peer-out", f"{prefix}-quix", str(usage_events), "exactly-once",
    ]
    return run_contender("Quix Streams exactly-once", cmd, usage_events, core, done_line, logdir)


def pin_broker(core):
    out = subprocess.run(["bash", os.path.join(ROOT, "deploy/local/kafka.sh"), "status"], capture_output=True, text=True)
    pid = "".join(ch for ch in out.stdout.split("pid", 1)[-1] if ch.isdigit())
    if pid:
        subprocess.run(["taskset", "-a", "-p", "-c", str(core), pid], capture_output=True)
    return pid


def latency(bootstrap, logdir, rate, seconds, core, live):
    """Steady `rate` events/s into fresh topics while cs-pulse (exactly-once) runs; times
    each P1 ticket from its append to its support_escalation alert being readable. With
    `live`, event times are the wall clock (ticks once an hour, as in production);
    without, the generator's simulated days run through in seconds (24 ticks per
    simulated day), the harder case."""
    from confluent_kafka import Consumer

    prefix = f"bench-lat-{'live' if live else 'sim'}-{int(time.time())}"
    create_topics(bootstrap, prefix, 4)
    port = free_port()
    cfg = os.path.join(logdir, "latency.toml")
    with open(cfg, "w") as f:
        f.write(config_text(bootstrap, prefix, f"{prefix}-eos", port, "exactly_once"))
    run = subprocess.Popen(
        ["taskset", "-c", str(core), BIN, "run", "--config", cfg],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(logdir, "latency-run.log"), "w"),
        env=dict(os.environ, RUST_LOG="warn"),
    )
    while (metric_sum(port, "cs_pulse_assigned_partitions") or 0) < 4:
        time.sleep(0.2)
    appended, alerted, stop_probe = {}, {}, threading.Event()

    def probe():
        # A short fetch wait, so that the probe sees an alert when it becomes readable
        # rather than when a lazy fetch returns.
        c = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"{prefix}-probe", "isolation.level": "read_committed",
            "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 10,
        })
        c.subscribe([f"{prefix}.support", f"{prefix}.alerts"])
        while not stop_probe.is_set():
            for m in c.consume(500, 0.1):
                if m.error():
                    continue
                now = time.time() * 1000
                v = json.loads(m.value())
                if m.topic().endswith(".support"):
                    kind = v.get("kind")
                    if kind == "ticket_escalated" or (kind == "ticket_opened" and v.get("priority") == "P1"):
                        appended[v["event_id"]] = m.timestamp()[1]
                elif v.get("kind") == "support_escalation":
                    alerted[v["details"]["event_id"]] = now
        c.close()

    t = threading.Thread(target=probe)
    t.start()
    lags = []

    def sample_lag():
        while not stop_probe.is_set():
            lags.append(metric_sum(port, "cs_pulse_consumer_lag") or 0)
            time.sleep(1)

    threading.Thread(target=sample_lag, daemon=True).start()
    gen_cfg = cfg
    log(f"latency: producing {rate}/s for {seconds} s")
    subprocess.run(
        [BIN, "gen", "--config", gen_cfg, "--accounts", "2000", "--teams", "5", "--users", "10", "--days", "400",
         "--rate", str(rate), "--events", str(int(rate * seconds)), "--seed", "5"] + (["--live"] if live else []),
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(logdir, "latency-gen.log"), "w"), check=True,
    )
    time.sleep(5)
    stop_probe.set()
    t.join()
    hist = metric_sum(port, "cs_pulse_event_to_alert_latency_seconds_count")
    hist_sum = metric_sum(port, "cs_pulse_event_to_alert_latency_seconds_sum")
    stop(run)
    delete_topics(bootstrap, prefix)
    lat = sorted(alerted[e] - appended[e] for e in alerted if e in appended)
    if not lat:
        return {"error": "no P1 ticket produced an alert", "tickets": len(appended)}

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    return {"live": live, "rate": rate, "seconds": seconds, "samples": len(lat), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "max_ms": lat[-1], "tickets": len(appended), "cs_pulse_histogram_count": hist,
            "cs_pulse_mean_ms": (hist_sum / hist * 1000) if hist else None,
            "max_consumer_lag": max(lags, default=0), "median_consumer_lag": sorted(lags)[len(lags) // 2] if lags else 0}


class SkipThroughput(Exception):
    """No throughput contender was asked for."""


def table(results, ceiling_rate):
    def vs(rate):
        # without the ceiling in the run (--only) there is nothing to compare with
        return f"{rate / ceiling_rate:.2f}" if ceiling_rate else "n/a"

    rows = ["| contender | events | seconds | events/s | vs ceiling | CPU s per million events | peak RSS MiB |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['name']} | {r['events']:,} | — | — | — | — | {r['error']} |")
            continue
        rate = r["events"] / r["seconds"]
        rows.append(
            f"| {r['name']} | {r['events']:,} | {r['seconds']:.1f} | {rate:,.0f} | {vs(rate)} | "
            f"{r['cpu'] / r['events'] * 1e6:.2f} | {r['rss_mib']:.0f} |"
        )
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--events", type=int, default=5_000_000, help="usage and support events to preload")
    ap.add_argument("--accounts", type=int, default=20_000, help="accounts (5 teams, 10 users each)")
    ap.add_argument("--only", default="ceiling,eos,alo,kstreams,quix,eos-live", help="contenders, comma-separated")
    ap.add_argument("--latency-rate", type=int, default=50_000)
    ap.add_argument("--latency-seconds", type=int, default=60)
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--python", default=os.path.join(ROOT, ".cache/venv-bench/bin/python"))
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    logdir = tempfile.mkdtemp(prefix="cs-pulse-e2e-")
    prefix = f"bench-{int(time.time())}"
    core_broker, core_app = 0, 1
    pid = pin_broker(core_broker)
    log(f"broker pid {pid} pinned to core {core_broker}; contenders on core {core_app}; logs in {logdir}")
    results, usage, support, lat, ceiling_rate = [], 0, 0, None, None
    try:
        if not only:
            raise SkipThroughput
        create_topics(args.bootstrap, prefix, 4)
        cfg = os.path.join(logdir, "gen.toml")
        with open(cfg, "w") as f:
            f.write(config_text(args.bootstrap, prefix, f"{prefix}-gen", free_port(), "at_least_once"))
        log(f"preloading {args.events:,} events over {args.accounts * 5:,} teams and {args.accounts * 50:,} users")
        t = time.time()
        subprocess.run(
            [BIN, "gen", "--config", cfg, "--accounts", str(args.accounts), "--teams", "5", "--users", "10",
             "--days", "400", "--events", str(args.events), "--seed", "1"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(logdir, "gen.log"), "w"), check=True,
        )
        usage = record_count(args.bootstrap, f"{prefix}.usage")
        support = record_count(args.bootstrap, f"{prefix}.support")
        total = usage + support
        log(f"preloaded {usage:,} usage + {support:,} support events in {time.time() - t:.0f} s")
        results = []
        if "ceiling" in only:
            results.append(ceiling(args.bootstrap, prefix, total, core_app, logdir))
        if "eos" in only:
            results.append(cs_pulse(args.bootstrap, prefix, total, core_app, logdir, "exactly_once"))
        if "alo" in only:
            results.append(cs_pulse(args.bootstrap, prefix, total, core_app, logdir, "at_least_once"))
        if "kstreams" in only:
            results.append(kstreams(args.bootstrap, prefix, usage, core_app, logdir))
        if "quix" in only:
            results.append(quix(args.bootstrap, prefix, usage, core_app, logdir, args.python))
        if "eos-live" in only:
            live = f"{prefix}-live"
            create_topics(args.bootstrap, live, 4)
            with open(cfg, "w") as f:
                f.write(config_text(args.bootstrap, live, f"{live}-gen", free_port(), "at_least_once"))
            log(f"preloading {args.events:,} events with event times at the wall clock")
            subprocess.run(
                [BIN, "gen", "--config", cfg, "--accounts", str(args.accounts), "--teams", "5", "--users", "10",
                 "--days", "400", "--events", str(args.events), "--seed", "1", "--live"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(logdir, "gen-live.log"), "w"), check=True,
            )
            live_total = record_count(args.bootstrap, f"{live}.usage") + record_count(args.bootstrap, f"{live}.support")
            results.append(cs_pulse(args.bootstrap, live, live_total, core_app, logdir, "exactly_once",
                                    ", live event times"))
        ceiling_rate = next((r["events"] / r["seconds"] for r in results if r["name"].startswith("ceiling")), None)
    except SkipThroughput:
        pass
    try:
        lat = [] if args.no_latency else [
            latency(args.bootstrap, logdir, args.latency_rate, args.latency_seconds, core_app, live)
            for live in (True, False)
        ]
    finally:
        delete_topics(args.bootstrap, prefix)  # the live preload's topics too: same prefix
        if pid:
            subprocess.run(["taskset", "-a", "-p", "-c", "0-%d" % (os.cpu_count() - 1), pid], capture_output=True)
    print(f"\ncs-pulse end-to-end benchmark: {usage:,} usage + {support:,} support events, "
          f"{args.accounts * 5:,} teams, {args.accounts * 50:,} users; one core per contender, broker on the other\n")
    print(table(results, ceiling_rate))
    for one in lat or []:
        print()
        times = "event times = wall clock" if one.get("live") else "simulated days in seconds"
        if "error" in one:
            print(f"latency ({times}): {one['error']}")
        else:
            print(f"alert latency at {one['rate']:,} events/s for {one['seconds']} s, {times} (P1 ticket append -> "
                  f"support_escalation readable, read_committed): p50 {one['p50_ms']:.0f} ms, "
                  f"p99 {one['p99_ms']:.0f} ms, max {one['max_ms']:.0f} ms over {one['samples']} tickets; "
                  f"consumer lag median {one['median_consumer_lag']:,.0f}, max {one['max_consumer_lag']:,.0f} records")
    with open(os.path.join(ROOT, "target/bench-e2e.json"), "w") as f:
        json.dump({"results": results, "latency": lat, "usage": usage, "support": support}, f, indent=1)


if __name__ == "__main__":
    main()
