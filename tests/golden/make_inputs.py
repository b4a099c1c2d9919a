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

# late: events whose tick is already evaluated count from the next tick; one beyond
# time.max_lateness_secs is dead-lettered too_late.
write("late", "teams.ndjson", [{"team_id": "t", "account_id": "a", "seats": 10}])
write("late", "usage.ndjson", [
    {"event_id": "1", "occurred_at": at(0), "account_id": "a", "team_id": "t", "user_id": "u1", "type": "page_view"},
    {"event_id": "2", "occurred_at": at(0, 11), "account_id": "a", "team_id": "t", "user_id": "u2", "type": "page_view"},
    {"event_id": "3", "occurred_at": at(2), "account_id": "a", "team_id": "t", "user_id": "u1", "type": "page_view"},
    {"event_id": "4", "occurred_at": at(0, 12), "account_id": "a", "team_id": "t", "user_id": "u3", "type": "page_view"},
    {"event_id": "5", "occurred_at": at(1, 23, 30), "account_id": "a", "team_id": "t", "user_id": "u3", "type": "page_view"},
    {"event_id": "6", "occurred_at": at(2, 9, 30), "account_id": "a", "team_id": "t", "user_id": "u4", "type": "page_view"},
    {"event_id": "7", "occurred_at": at(0, 12) - 1, "account_id": "a", "team_id": "t", "user_id": "u5", "type": "page_view"},
])

# crm_batch: the tickets of 03-03 arrive in one batch after 03-04 11:00, as a CRM sync
# delivers them. The support file is in arrival order; replay merges it with usage by
# occurred_at heads, so the batch is read right after the 03-04 11:00 resolution.
write("crm_batch", "usage.ndjson", [
    {"event_id": f"u{d}", "occurred_at": at(d), "account_id": "a", "team_id": "t", "user_id": "u1", "type": "page_view"}
    for d in range(4)
])
def tk(eid, when, kind, ticket, prio=None, team="t"):
    r = {"event_id": eid, "occurred_at": when, "account_id": "a", "kind": kind, "ticket_id": ticket}
    if team:
        r["team_id"] = team
    if prio:
        r["priority"] = prio
    return r
write("crm_batch", "support.ndjson", [
    tk("s1", at(0, 9), "ticket_opened", "T1", "P3"),
    tk("s2", at(2, 11), "ticket_resolved", "T1"),
    # the batch of 03-03, read late
    tk("b1", at(1, 16), "ticket_resolved", "T3"),
    tk("b2", at(1, 15), "ticket_opened", "T3", "P2"),
    tk("b3", at(1, 14), "ticket_opened", "T2", "P1"),
    tk("b4", at(1, 17), "ticket_escalated", "T4", "P2", team=None),
    # more than time.max_lateness_secs (2 days) before the last evaluated tick
    tk("b5", at(-1, 23), "ticket_opened", "T5", "P1"),
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

# magic_number: five fast changes (2 h) deployed on days 1..5, five slow ones (3 h) on
# days 29..33, with a non-production deploy, a repeated production deploy and a deploy
# logged before its change_created among them.
def chg(eid, at_ms, kind, change, env=None, app="api", user="dev"):
    e = {"event_id": eid, "occurred_at": at_ms, "account_id": "a", "team_id": "t", "type": kind, "change_id": change}
    if kind == "change_created":
        e["user_id"] = user
    else:
        e["environment"] = env
        e["app_id"] = app
    return e

rows = []
for d in range(1, 6):
    rows.append(chg(f"cr{d}", at(d, 8), "change_created", f"fast{d}"))
    if d <= 3:  # staging 30 minutes after creation: must not count
        rows.append(chg(f"st{d}", at(d, 8, 30), "change_deployed", f"fast{d}", "staging"))
    rows.append(chg(f"dp{d}", at(d, 10), "change_deployed", f"fast{d}", "production"))
for d in range(29, 34):
    if d == 31:  # deployed at 03:00, created at 13:00: clock skew, counts as 0
        rows.append(chg(f"dp{d}", at(d, 3), "change_deployed", f"slow{d}", "production"))
        rows.append(chg(f"cr{d}", at(d, 13), "change_created", f"slow{d}"))
        continue
    rows.append(chg(f"cr{d}", at(d, 7), "change_created", f"slow{d}"))
    rows.append(chg(f"dp{d}", at(d, 10), "change_deployed", f"slow{d}", "production"))
    if d == 30:  # deployed to production again two days later: only the first counts
        rows.append(chg("again30", at(32, 10), "change_deployed", "slow30", "production"))
rows.sort(key=lambda e: e["occurred_at"])
rows.append({"event_id": "end", "occurred_at": at(40), "account_id": "a", "team_id": "t", "user_id": "dev", "type": "page_view"})
write("magic_number", "usage.ndjson", rows)

# onboarding: "stall" never reaches production (its only deploy predates the contract);
# "new" reaches its first app on day 3 and its third on day 85, near renewal.
write("onboarding", "accounts.ndjson", [
    {"account_id": "stall", "name": "Stall", "seats": 10, "contract_start": at(0, 12), "renewal_date": at(400)},
    {"account_id": "new", "name": "New", "contract_start": at(0, 0), "renewal_date": at(150)},
])
def dep(eid, acct, day, app, env="production"):
    return {"event_id": eid, "occurred_at": at(day), "account_id": acct, "team_id": f"{acct}-t", "type": "change_deployed",
            "change_id": eid, "environment": env, "app_id": app}
rows = [
    {"event_id": "s0", "occurred_at": at(0, 6), "account_id": "stall", "team_id": "stall-t", "type": "change_deployed",
     "change_id": "pre", "environment": "production", "app_id": "pre-contract"},
    {"event_id": "s1", "occurred_at": at(0), "account_id": "stall", "team_id": "stall-t", "user_id": "u", "type": "page_view"},
    {"event_id": "n0", "occurred_at": at(0), "account_id": "new", "team_id": "new-t", "user_id": "u", "type": "page_view"},
    dep("n1", "new", 3, "app-a"),
    dep("n2", "new", 4, "app-a"),
    dep("n3", "new", 5, "app-b", "staging"),
    dep("n4", "new", 40, "app-b"),
    dep("n5", "new", 85, "app-c"),
    {"event_id": "s2", "occurred_at": at(95), "account_id": "stall", "team_id": "stall-t", "user_id": "u", "type": "page_view"},
]
rows.sort(key=lambda e: e["occurred_at"])
write("onboarding", "usage.ndjson", rows)

# champions_support: champions going inactive; a reopened ticket; a team-less P1.
rows = []
for d in range(45):
    if d <= 11:
        rows.append({"event_id": f"c1-{d}", "occurred_at": at(d), "account_id": "a", "team_id": "t", "user_id": "c1", "type": "page_view"})
    rows.append({"event_id": f"c2-{d}", "occurred_at": at(d), "account_id": "a", "team_id": "t", "user_id": "c2", "type": "page_view"})
    if d <= 10:
        rows.append({"event_id": f"x-{d}", "occurred_at": at(d), "account_id": "a", "team_id": "t2", "user_id": "x", "type": "page_view"})
write("champions_support", "usage.ndjson", rows)
write("champions_support", "support.ndjson", [
    {"event_id": "t1-open", "occurred_at": at(1), "account_id": "a", "team_id": "t", "kind": "ticket_opened", "ticket_id": "T1", "priority": "P2"},
    {"event_id": "t1-fix", "occurred_at": at(2), "account_id": "a", "team_id": "t", "kind": "ticket_resolved", "ticket_id": "T1"},
    {"event_id": "t1-again", "occurred_at": at(3), "account_id": "a", "team_id": "t", "kind": "ticket_reopened", "ticket_id": "T1"},
    {"event_id": "t1-esc", "occurred_at": at(5), "account_id": "a", "team_id": "t", "kind": "ticket_escalated", "ticket_id": "T1", "priority": "P1"},
    {"event_id": "t2-open", "occurred_at": at(6), "account_id": "a", "kind": "ticket_opened", "ticket_id": "T2", "priority": "P1"},
])

# focused_cascade: one team under a group, business unit and division, of an account renewing
# on 2026-05-01; support-only model.
# Its band falls on all five levels at once, twice, then recovers.
write("focused_cascade", "accounts.ndjson", [
    {"account_id": "acme", "name": "Acme", "segment": "enterprise", "seats": 40,
     "contract_start": 1_746_057_600_000, "renewal_date": 1_777_593_600_000},
])
write("focused_cascade", "teams.ndjson", [
    {"team_id": "t1", "account_id": "acme", "name": "one", "group": "g", "business_unit": "bu", "division": "dv"},
])
def ticket(eid, day, kind, tid, prio=None, team="t1", account="acme"):
    r = {"event_id": eid, "occurred_at": at(day), "account_id": account, "kind": kind, "ticket_id": tid}
    if team:
        r["team_id"] = team
    if prio:
        r["priority"] = prio
    return r
rows = [ticket("k0", 0, "ticket_opened", "k0", "P3")]
rows += [ticket(f"k{i}", 9, "ticket_opened", f"k{i}", "P2") for i in range(1, 5)]
rows += [ticket("k5", 12, "ticket_opened", "k5", "P1")]
rows += [ticket(f"r{i}", 20, "ticket_resolved", f"k{i}") for i in range(1, 6)]
write("focused_cascade", "support.ndjson", rows)

# focused_repeat: one account, renewing on 2026-07-15, one team without a record. Twelve
# users, eight after day 13, none after day 62; account-level P2 tickets move the account's
# band three times.
write("focused_repeat", "accounts.ndjson", [
    {"account_id": "a", "name": "A", "segment": "mid_market", "seats": 12,
     "contract_start": 1_752_537_600_000, "renewal_date": 1_784_073_600_000},
])
rows = []
for d in range(63):
    for u in range(1, 13 if d <= 13 else 9):
        rows.append({"event_id": f"u{u:02}-{d}", "occurred_at": at(d), "account_id": "a", "team_id": "t", "user_id": f"u{u:02}", "type": "page_view"})
write("focused_repeat", "usage.ndjson", rows)
rows = []
for first, opened, resolved in ((1, 19, 24), (5, 29, 34), (9, 60, 80)):
    rows += [ticket(f"o{i}", opened, "ticket_opened", f"k{i}", "P2", team=None, account="a") for i in range(first, first + 4)]
    rows += [ticket(f"r{i}", resolved, "ticket_resolved", f"k{i}", team=None, account="a") for i in range(first, first + 4)]
rows.sort(key=lambda e: e["occurred_at"])
write("focused_repeat", "support.ndjson", rows)
