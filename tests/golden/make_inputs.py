"""Writes the input files of the golden replay cases. The expected_*.ndjson files beside
them are written and checked by hand; see each case's README.md."""
import json, os

D0 = "2026-03-0{}T{}Z"  # placeholder, not used
DAY = 86_400_000
BASE = 1_772_409_600_000  # 2026-03-02T00:00:00Z, a Monday
H = 3_600_000


def at(day, hour=10, minute=0):
    return BASE + day * DAY + hour * H + minute * 60_000


def write(case, name, rows):
    os.makedirs(case, exist_ok=True)
    with open(os.path.join(case, name), "w") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


# hysteresis: support-only model, account-level P2/P3 tickets steer the score.
targets = [(3, 0), (2, 5), (3, 2), (2, 2), (1, 5), (5, 5), (6, 2), (5, 2), (4, 5), (6, 2), (1, 5), (6, 2), (0, 0)]
rows, open_ = [], {2: [], 3: []}
seq = 0
for day, (b, c) in enumerate(targets):
    for prio, want in ((2, b), (3, c)):
        while len(open_[prio]) > want:
            t = open_[prio].pop()
            seq += 1
            rows.append({"event_id": f"s{seq}", "occurred_at": at(day), "account_id": "a", "kind": "ticket_resolved", "ticket_id": t})
        while len(open_[prio]) < want:
            seq += 1
            t = f"P{prio}-{seq}"
            open_[prio].append(t)
            rows.append({"event_id": f"s{seq}", "occurred_at": at(day), "account_id": "a", "kind": "ticket_opened", "ticket_id": t, "priority": f"P{prio}"})
write("hysteresis", "support.ndjson", rows)

# unions: two teams of one group share a user; a third team has no record.
write("unions", "teams.ndjson", [
    {"team_id": "t1", "account_id": "a", "name": "one", "group": "g", "business_unit": "bu", "seats": 2},
    {"team_id": "t2", "account_id": "a", "name": "two", "group": "g", "business_unit": "bu", "seats": 2},
])
write("unions", "accounts.ndjson", [{"account_id": "a", "name": "A", "seats": 10}])
write("unions", "usage.ndjson", [
    {"event_id": f"u{i}", "occurred_at": at(0, 9 + i), "account_id": "a", "team_id": t, "user_id": u, "type": "page_view"}
    for i, (t, u) in enumerate([("t1", "u1"), ("t1", "u2"), ("t2", "u2"), ("t2", "u3"), ("t3", "u4")])
])

# trend: 5 users on day 0, only 2 of them on days 1..7.
rows = []
for day in range(8):
    users = ["a", "b", "c", "d", "e"] if day == 0 else ["a", "b"]
    for u in users:
        rows.append({"event_id": f"{day}-{u}", "occurred_at": at(day), "account_id": "acct", "team_id": "t", "user_id": u, "type": "page_view"})
write("trend", "usage.ndjson", rows)

# watermark jump: 10 users on days 0..6, then one event on day 30.
rows = []
for day in range(7):
    for u in range(10):
        rows.append({"event_id": f"{day}-{u}", "occurred_at": at(day), "account_id": "a", "team_id": "t", "user_id": f"u{u}", "type": "page_view"})
rows.append({"event_id": "late-return", "occurred_at": at(30), "account_id": "a", "team_id": "t", "user_id": "u0", "type": "page_view"})
write("watermark_jump", "usage.ndjson", rows)

# late: events whose tick is already evaluated are dead-lettered.
write("late", "teams.ndjson", [{"team_id": "t", "account_id": "a", "seats": 10}])
write("late", "usage.ndjson", [
    {"event_id": "1", "occurred_at": at(0), "account_id": "a", "team_id": "t", "user_id": "u1", "type": "page_view"},
    {"event_id": "2", "occurred_at": at(0, 11), "account_id": "a", "team_id": "t", "user_id": "u2", "type": "page_view"},
    {"event_id": "3", "occurred_at": at(2), "account_id": "a", "team_id": "t", "user_id": "u1", "type": "page_view"},
    {"event_id": "4", "occurred_at": at(0, 12), "account_id": "a", "team_id": "t", "user_id": "u3", "type": "page_view"},
    {"event_id": "5", "occurred_at": at(1, 23, 30), "account_id": "a", "team_id": "t", "user_id": "u3", "type": "page_view"},
    {"event_id": "6", "occurred_at": at(2, 9, 30), "account_id": "a", "team_id": "t", "user_id": "u4", "type": "page_view"},
])

# system events: no user_id, or an empty one, count for the entity but not as users.
write("system_events", "teams.ndjson", [
    {"team_id": "t", "account_id": "a", "seats": 4},
    {"team_id": "t2", "account_id": "a", "seats": 5},
])
write("system_events", "accounts.ndjson", [{"account_id": "a", "seats": 9}])
write("system_events", "usage.ndjson", [
    {"event_id": "1", "occurred_at": at(0), "account_id": "a", "team_id": "t", "user_id": "u1", "type": "page_view"},
    {"event_id": "2", "occurred_at": at(0, 11), "account_id": "a", "team_id": "t", "type": "change_deployed", "change_id": "c1", "environment": "production", "app_id": "app"},
    {"event_id": "3", "occurred_at": at(0, 12), "account_id": "a", "team_id": "t2", "user_id": "", "type": "nightly_sync"},
    '{"event_id": 7, "occurred_at": 1772445600000, "account_id": "a", "team_id": "t", "type": "x"}',
    "this is not json",
    {"event_id": "4", "occurred_at": "2026-03-02T13:00:00Z", "account_id": "a", "team_id": "t", "user_id": "u1", "type": "page_view"},
])
