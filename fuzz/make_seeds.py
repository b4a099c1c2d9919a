#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/seeds/<target>/.

Needs `fastavro` (for the Avro bodies and container files):
    python3 -m venv /tmp/avenv && /tmp/avenv/bin/pip install fastavro
    /tmp/avenv/bin/python fuzz/make_seeds.py

Seeds named `valid-*` must be accepted by their target (tests/fuzz_corpus.rs checks it);
every other seed is hostile and only has to be survived. Input layouts are described in
fuzz/targets.rs and fuzz/README.md.
"""

import io
import json
import os
import shutil
import struct

import fastavro

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "..", "schemas")
SEEDS = os.path.join(HERE, "seeds")

T0 = 1767225600000  # 2026-01-01T00:00:00Z
HOUR = 3600000
DAY = 24 * HOUR


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def js(obj):
    return json.dumps(obj, separators=(",", ":"))


USAGE = {"event_id": "e-1", "occurred_at": T0 + 5 * 60000, "account_id": "acct-1", "team_id": "team-1",
         "user_id": "u-1", "type": "dashboard_viewed", "feature": "dashboards", "properties": {"page": "home"}}
DEPLOY = {"event_id": "e-2", "occurred_at": "2026-01-01T03:00:00Z", "account_id": "acct-1", "team_id": "team-1",
          "type": "change_deployed", "change_id": "c-1", "environment": "production", "app_id": "app-1"}
CREATED = {"event_id": "e-3", "occurred_at": T0 + 60000, "account_id": "acct-1", "team_id": "team-1",
           "user_id": "u-1", "type": "change_created", "change_id": "c-1"}
P1 = {"event_id": "s-1", "occurred_at": T0 + 4 * HOUR, "account_id": "acct-1", "team_id": "team-1",
      "kind": "ticket_opened", "ticket_id": "t-1", "priority": "P1"}
NPS = {"event_id": "s-2", "occurred_at": T0 + 5 * HOUR, "account_id": "acct-1", "kind": "nps_response",
       "score": 3, "user_id": "u-1"}
CSAT = {"event_id": "s-3", "occurred_at": T0 + 6 * HOUR, "account_id": "acct-1", "team_id": "team-1",
        "kind": "csat_response", "score": 5}
ACCOUNT = {"account_id": "acct-1", "name": "Acme", "segment": "enterprise", "seats": 250,
           "contract_start": T0 - 30 * DAY, "renewal_date": T0 + 335 * DAY}
TEAM = {"team_id": "team-1", "account_id": "acct-1", "name": "Platform", "group": "Engineering",
        "business_unit": "Product", "division": "Technology", "seats": 40}


def json_event():
    t = "json_event"
    usage, support = b"\x00", b"\x01"
    account = b"\x02\x06acct-1"  # selector 2, key of 6 bytes
    team = b"\x03\xff"  # selector 3, no key
    write(t, "valid-usage", usage + js(USAGE).encode())
    write(t, "valid-change-deployed", usage + js(DEPLOY).encode())
    write(t, "valid-change-created", usage + js(CREATED).encode())
    write(t, "valid-ticket-opened-p1", support + js(P1).encode())
    write(t, "valid-nps", support + js(NPS).encode())
    write(t, "valid-account", account + js(ACCOUNT).encode())
    write(t, "valid-account-tombstone", account + b"null")
    write(t, "valid-team", team + js(TEAM).encode())
    write(t, "truncated", usage + js(DEPLOY).encode()[:57])
    write(t, "deep-nesting", usage + b'{"event_id":' + b"[" * 3000)
    write(t, "deep-properties", usage + js(USAGE).encode()[:-1] + b',"properties":{"a":' + b"{\"b\":" * 200 + b"1" + b"}" * 201 + b"}")
    write(t, "huge-numbers", support + b'{"event_id":"s","occurred_at":1e400,"account_id":"a","kind":"nps_response","score":18446744073709551616}')
    write(t, "year-9999", usage + js(dict(USAGE, occurred_at="9999-12-31T23:59:59Z")).encode())
    write(t, "microseconds", usage + js(dict(USAGE, occurred_at=1767225600000000)).encode())
    write(t, "negative-time", account + js(dict(ACCOUNT, contract_start=-1, renewal_date=-9223372036854775808)).encode())
    write(t, "max-times", account + js(dict(ACCOUNT, seats=9223372036854775807, contract_start=9223372036854775807)).encode())
    write(t, "invalid-utf8", usage + b'{"event_id":"\xff\xfe","occurred_at":1,"account_id":"a","team_id":"t","type":"x"}')
    write(t, "bom", usage + b"\xef\xbb\xbf" + js(USAGE).encode())
    write(t, "escapes-surrogate", support + b'{"event_id":"\\ud800","occurred_at":"2026-02-29T00:00:00Z","account_id":"\\u0000","kind":"csat_response","score":5.0}')
    write(t, "rfc3339-edge", team + b'{"team_id":"t","account_id":"a","seats":-1,"event_id":"e","event_id":1}')


def avro_body(schema_file, record):
    schema = fastavro.parse_schema(json.load(open(os.path.join(SCHEMAS, schema_file))))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def avro_container(schema_file, records):
    schema = fastavro.parse_schema(json.load(open(os.path.join(SCHEMAS, schema_file))))
    buf = io.BytesIO()
    fastavro.writer(buf, schema, records, codec="null", sync_interval=1000)
    return buf.getvalue()


def frame(schema_id, body):
    return b"\x00" + struct.pack(">I", schema_id) + body


def zigzag(n):
    n = (n << 1) ^ (n >> 63)
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def avro_usage(rec):
    full = {k: None for k in ["user_id", "feature", "app_id", "change_id", "environment", "properties"]}
    full.update(rec)
    return avro_body("usage_event.avsc", full)


def avro_support(rec):
    full = {k: None for k in ["team_id", "ticket_id", "priority", "score", "user_id"]}
    full.update(rec)
    return avro_body("support_event.avsc", full)


def avro_account(rec):
    return avro_body("account_record.avsc", rec)


def avro_team(rec):
    return avro_body("team_record.avsc", rec)


def avro_frame():
    t = "avro_frame"
    # selector: bit 7 = "frame the rest for me", low 2 bits = usage/support/accounts/teams
    usage = dict(USAGE)
    deploy = dict(DEPLOY, occurred_at=T0 + 3 * HOUR)
    body_usage = avro_usage(usage)
    write(t, "valid-usage-framed", b"\x80" + body_usage)
    write(t, "valid-usage-raw", b"\x00" + frame(1, body_usage))
    write(t, "valid-change-deployed", b"\x84" + avro_usage(deploy))
    write(t, "valid-ticket-opened-p1", b"\x81" + avro_support(P1))
    write(t, "valid-nps-raw", b"\x01" + frame(7, avro_support(NPS)))
    write(t, "valid-account", b"\x82\x06acct-1" + avro_account(ACCOUNT))
    write(t, "valid-account-tombstone", b"\x02\x06acct-1")
    write(t, "valid-team", b"\x83\xff" + avro_team(TEAM))
    write(t, "wrong-magic", b"\x00" + b"\x01\x00\x00\x00\x01" + body_usage)
    write(t, "truncated-header", b"\x00\x00\x00\x00")
    write(t, "truncated-body", b"\x80" + body_usage[: len(body_usage) // 2])
    # event_id string claims 2^62 bytes
    write(t, "huge-string-length", b"\x80" + zigzag(1 << 62) + b"abc")
    write(t, "negative-length", b"\x80" + zigzag(-5) + b"abc")
    write(t, "varint-overlong", b"\x80" + b"\x02e" + b"\xff" * 11 + b"\x01")
    write(t, "microseconds", b"\x80" + avro_usage(dict(usage, occurred_at=1767225600000000)))
    write(t, "negative-time", b"\x80" + avro_usage(dict(usage, occurred_at=-1)))
    # support: kind enum index 99, then union branch 7 for team_id
    write(t, "bad-enum-and-union", b"\x81" + b"\x02s" + zigzag(T0) + b"\x02a" + zigzag(7) + zigzag(99))
    # properties map with a block count of 2^40 entries
    body = bytearray(avro_usage({k: v for k, v in usage.items() if k != "properties"}))
    body = bytes(body[:-1]) + b"\x02" + zigzag(1 << 40) + b"\x02k\x02v"
    write(t, "huge-map-block", b"\x80" + body)
    write(t, "trailing-bytes", b"\x83\xff" + avro_team(TEAM) + b"\x00\x00junk")


def ndjson(*recs):
    return "".join((r if isinstance(r, str) else js(r)) + "\n" for r in recs)


def replay_line():
    t = "replay_line"
    days = [dict(USAGE, event_id=f"u-{d}", occurred_at=T0 + d * DAY + 600000, user_id=f"u-{d % 3}") for d in range(4)]
    # Dimension lines go last: every line is tried as each kind, and the last record wins.
    write(t, "valid-mixed.ndjson", ndjson(CREATED, *days, DEPLOY, P1, NPS, CSAT, TEAM, ACCOUNT))
    write(t, "valid-crlf-blank-lines.ndjson",
          ("\r\n  \r\n".join(js(r) for r in [USAGE, P1, dict(NPS, occurred_at=T0 + 2 * DAY)]) + "\r\n").encode())
    write(t, "valid-bom.ndjson", b"\xef\xbb\xbf" + ndjson(USAGE, P1).encode())
    write(t, "valid-late-event.ndjson",
          ndjson(USAGE, dict(USAGE, event_id="later", occurred_at=T0 + 3 * DAY), dict(P1, occurred_at=T0 + HOUR)))
    write(t, "valid-truncated-last-line.ndjson", ndjson(USAGE, P1) + js(NPS)[:30])
    write(t, "microseconds.ndjson", ndjson(USAGE, dict(USAGE, event_id="us", occurred_at=1767225600000000)))
    write(t, "year-9999.ndjson", ndjson(USAGE, dict(P1, event_id="far", occurred_at="9999-12-31T23:59:59Z")))
    write(t, "epoch-zero.ndjson", ndjson(dict(USAGE, occurred_at=0), dict(NPS, occurred_at=1)))
    write(t, "contract-start-max.ndjson",
          ndjson(DEPLOY, TEAM, dict(ACCOUNT, contract_start=9223372036854775807, renewal_date=9223372036854775807)))
    write(t, "invalid-utf8.ndjson", ndjson(USAGE).encode() + b'{"event_id":"\xff"}\n' + ndjson(P1).encode())
    write(t, "deep-nesting.ndjson", ndjson(USAGE) + "[" * 2000 + "\n")
    write(t, "huge-numbers.ndjson", ndjson(USAGE, '{"event_id":"x","occurred_at":1e400,"account_id":"a","team_id":"t","type":"y"}',
                                           dict(NPS, score=18446744073709551615)))
    write(t, "container-usage.avro", avro_container("usage_event.avsc", [
        {k: d.get(k) for k in ["event_id", "occurred_at", "account_id", "team_id", "user_id", "type", "feature",
                                 "app_id", "change_id", "environment", "properties"]} for d in days]))
    write(t, "container-account.avro", avro_container("account_record.avsc", [ACCOUNT]))
    c = avro_container("team_record.avsc", [TEAM])
    write(t, "container-truncated.avro", c[: len(c) - 20])


def config():
    t = "config"
    write(t, "valid-empty.toml", "")
    write(t, "valid-spec-defaults.toml", """\
[kafka]
bootstrap_servers = "127.0.0.1:9092"
group_id = "cs-pulse"
[kafka.client]
"security.protocol" = "plaintext"
[topics]
usage = "cs.usage.v1"
support = "cs.support.v1"
accounts = "cs.accounts.v1"
teams = "cs.teams.v1"
alerts = "cs.health.alerts.v1"
scores = "cs.health.scores.v1"
deadletter = "cs.deadletter.v1"
[time]
allowed_lateness_secs = 3600
idle_timeout_secs = 30
evaluation_interval_secs = 3600
[adoption]
key_features = ["dashboards", "alerts"]
[magic_number]
pending_ttl_secs = 7776000
[health]
warmup_secs = 604800
[health.weights]
utilization = 25
breadth = 10
trend = 15
time_to_production = 15
support = 20
sentiment = 5
champions = 10
[health.bands]
green = 70
yellow = 40
hysteresis = 5
[processing]
guarantee = "exactly_once"
[output]
format = "json"
[metrics]
bind = "127.0.0.1:9464"
""")
    write(t, "valid-segments.toml", """\
[health.segments.enterprise.weights]
utilization = 40
support = 0.5
[health.segments.enterprise.bands]
green = 80
[health.segments."smb \\"tiny\\" ✓".bands]
yellow = 0
hysteresis = 0
""")
    write(t, "valid-15min-interval.toml", "[time]\nevaluation_interval_secs = 900\nallowed_lateness_secs = 0\n")
    write(t, "valid-daily-interval.toml", "[time]\nevaluation_interval_secs = 86400\n[health]\nwarmup_secs = 0\n")
    write(t, "valid-odd-interval.toml", "[time]\nevaluation_interval_secs = 420\nmax_future_secs = 0\n")
    # Every range at its accepted upper end (and limits at their lower end).
    write(t, "valid-range-edges.toml", """\
[time]
evaluation_interval_secs = 604800
idle_timeout_secs = 86400
allowed_lateness_secs = 31536000
max_future_secs = 31536000
[magic_number]
pending_ttl_secs = 31536000
[health]
warmup_secs = 315360000
[limits]
max_accounts_per_partition = 1
max_teams_per_account = 1
max_users_per_account = 1000000000
max_tickets_per_account = 1
max_changes_per_account = 1000000000
""")
    write(t, "interval-7s.toml", "[time]\nevaluation_interval_secs = 7\n")
    write(t, "interval-u64-max.toml", "[time]\nevaluation_interval_secs = 18446744073709551615\n")
    write(t, "interval-i64-max.toml", "[time]\nevaluation_interval_secs = 9223372036854775807\n")
    write(t, "warmup-huge.toml", "[health]\nwarmup_secs = 9223372036854775807\n")
    write(t, "ttl-and-lateness-huge.toml",
          "[time]\nallowed_lateness_secs = 18446744073709551615\n[magic_number]\npending_ttl_secs = 18446744073709551615\n")
    write(t, "weights-1e308.toml", "[health.weights]\n" + "".join(
        f"{k} = 1e308\n" for k in ["utilization", "breadth", "trend", "time_to_production", "support", "sentiment", "champions"]))
    write(t, "weights-inf-nan.toml", "[health.weights]\nutilization = 1e400\n[health.bands]\ngreen = nan\n")
    write(t, "negative-zero.toml", "[health.weights]\nutilization = -0.0\n[health.bands]\nhysteresis = -0.0\n")
    write(t, "unknown-key.toml", "[time]\nevaluation_interval = 3600\n")
    write(t, "invalid-utf8.toml", b"[kafka]\ngroup_id = \"\xff\xfe\"\n")
    write(t, "deep-nesting.toml", "a = " + "[" * 2000 + "\n")


if __name__ == "__main__":
    if os.path.isdir(SEEDS):
        shutil.rmtree(SEEDS)
    json_event()
    avro_frame()
    replay_line()
    config()
