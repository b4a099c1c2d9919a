//! Late events ("Time, windows, watermark" and "Evaluation details"): read after their
//! tick was evaluated, they are applied and count from the next tick evaluated; outputs
//! already written stay; only an event more than `time.max_lateness_secs` older than
//! the last evaluated tick is refused (`too_late`).

use super::*;

/// The latest score record of an entity at or before `at`: its score as of that tick.
fn score_as_of(r: &Run, level: Level, id: &str, at: i64) -> Option<f64> {
    r.out.scores.iter().rfind(|s| s.entity.level == level && s.entity.id == id && s.at <= at).map(|s| s.score)
}

#[test]
fn a_late_event_counts_from_the_next_tick_and_written_outputs_stay() {
    let mut r = Run::new(cfg(|c| c.health.weights = only("utilization")));
    r.dims.apply_team(team_rec("t", None, None, Some(10)));
    assert_eq!(r.ingest(usage("1", T0 + H, "a", "t", Some("u1"))), Ingested::Accepted);
    r.advance(T0 + 2 * D);
    assert_eq!(r.score_of(Level::Team, "t", T0 + D).map(|s| s.score), Some(12.5));
    let written = r.out.scores.len();
    // u2 was active in the first interval; read now, after ticks T0+1d and T0+2d
    assert_eq!(r.ingest(usage("2", T0 + 2 * H, "a", "t", Some("u2"))), Ingested::Late { tick: Tick(T0 + D) });
    assert_eq!(r.out.scores.len(), written, "nothing is revised when a late event is read");
    r.advance(T0 + 3 * D);
    assert_eq!(r.score_of(Level::Team, "t", T0 + 3 * D).map(|s| s.score), Some(25.0), "2 of 10 seats in 28 days");
    assert_eq!(r.score_of(Level::Team, "t", T0 + D).map(|s| s.score), Some(12.5));
    assert_eq!(r.score_of(Level::Team, "t", T0 + 2 * D), None, "tick T0+2d was written before, unchanged");
}

#[test]
fn an_event_is_too_late_only_beyond_the_maximum_lateness_of_the_last_tick() {
    let mut r = Run::new(cfg(|c| c.time.max_lateness_secs = 10 * 86_400));
    r.ingest(usage("1", T0 + H, "a", "t", Some("u1")));
    r.advance(T0 + 20 * D);
    assert_eq!(r.engine.last_evaluated(), Some(Tick(T0 + 20 * D)));
    // exactly the maximum lateness before the last tick: applied
    let at_limit = r.ingest(usage("2", T0 + 10 * D, "a", "t", Some("u2")));
    assert_eq!(at_limit, Ingested::Late { tick: Tick(T0 + 11 * D) });
    assert!(at_limit.is_accepted() && at_limit.is_late() && at_limit.rejection(EventTime(T0 + 10 * D)).is_none());
    // one millisecond older: refused, and nothing changes
    let before = r.engine.state_size();
    let refused = r.ingest(usage("3", T0 + 10 * D - 1, "a", "t2", Some("u3")));
    assert_eq!(refused, Ingested::TooLate { last: Tick(T0 + 20 * D), oldest: EventTime(T0 + 10 * D) });
    assert!(!refused.is_accepted() && refused.is_late());
    assert_eq!(r.engine.state_size(), before);
    let why = refused.rejection(EventTime(T0 + 10 * D - 1)).unwrap();
    assert_eq!(why.reason(), "too_late");
    assert!(why.detail.contains("time.max_lateness_secs"), "{}", why.detail);
    // a support escalation that old fires nothing
    let p1 = r.ingest(ticket("p", T0 + 9 * D, Some("t"), SupportKind::TicketOpened, "T", Some(1)));
    assert!(matches!(p1, Ingested::TooLate { .. }));
    assert!(r.alerts(AlertKind::SupportEscalation).is_empty());
}

#[test]
fn nothing_is_too_late_before_the_first_tick_is_evaluated() {
    let mut r = Run::new(cfg(|c| c.time.max_lateness_secs = 86_400));
    assert_eq!(r.ingest(usage("1", T0 + 400 * D, "a", "t", Some("u1"))), Ingested::Accepted);
    assert_eq!(r.ingest(usage("2", T0, "a", "t", Some("u2"))), Ingested::Accepted, "400 days earlier, no tick yet");
    r.advance(T0 + 2 * D);
    assert_eq!(r.engine.last_evaluated(), Some(Tick(T0 + 2 * D)), "the earlier event moved the first tick back");
}

#[test]
fn a_late_p1_raises_its_escalation_at_its_own_time_and_counts_from_the_next_tick() {
    let mut r = Run::new(cfg(|c| c.health.weights = only("support")));
    r.ingest(usage("u", T0 + H, "a", "t", Some("u1")));
    r.advance(T0 + 2 * D);
    assert_eq!(score_as_of(&r, Level::Team, "t", T0 + 2 * D), Some(100.0));
    // a CRM sync delivers the tickets of the second interval after it was evaluated
    let opened = ticket("o1", T0 + D + 3 * H, Some("t"), SupportKind::TicketOpened, "T1", Some(1));
    assert_eq!(r.ingest(opened), Ingested::Late { tick: Tick(T0 + 2 * D) });
    let escalated = ticket("e2", T0 + D + 4 * H, Some("t"), SupportKind::TicketEscalated, "T2", Some(1));
    assert_eq!(r.ingest(escalated), Ingested::Late { tick: Tick(T0 + 2 * D) });
    let alerts = r.alerts(AlertKind::SupportEscalation);
    assert_eq!(
        alerts.iter().map(|a| (a.at, a.entity.id.as_str(), a.severity)).collect::<Vec<_>>(),
        vec![(T0 + D + 3 * H, "t", Severity::Critical), (T0 + D + 4 * H, "t", Severity::Critical)],
        "raised when read, at the events' own times"
    );
    assert_eq!(score_as_of(&r, Level::Team, "t", T0 + 2 * D), Some(100.0), "tick T0+2d is not revised");
    r.advance(T0 + 3 * D);
    // two open P1 tickets (-60) and one escalation in 7 days (-15)
    assert_eq!(r.score_of(Level::Team, "t", T0 + 3 * D).map(|s| s.score), Some(25.0));
    assert_eq!(r.score_of(Level::Account, "a", T0 + 3 * D).map(|s| s.score), Some(25.0));
}

#[test]
fn a_late_ticket_folds_in_event_time_order() {
    let mut r = Run::new(cfg(|c| c.health.weights = only("support")));
    r.ingest(ticket("r1", T0 + 5 * H, Some("t"), SupportKind::TicketResolved, "T1", None));
    r.advance(T0 + 2 * D);
    // T1 was opened before it was resolved: read late, after its resolution, it stays closed
    assert!(r.ingest(ticket("o1", T0 + 2 * H, Some("t"), SupportKind::TicketOpened, "T1", Some(2))).is_late());
    // T3 was opened and is still open: it counts
    assert!(r.ingest(ticket("o3", T0 + 3 * H, Some("t"), SupportKind::TicketOpened, "T3", Some(3))).is_late());
    r.advance(T0 + 3 * D);
    assert_eq!(r.score_of(Level::Team, "t", T0 + 3 * D).map(|s| s.score), Some(97.0), "only T3 (P3) is open");
}

#[test]
fn a_late_change_half_and_a_late_deploy_count_from_the_first_tick_that_has_seen_them() {
    let mut r = Run::new(cfg(|c| {
        c.health.weights = only("support");
        c.health.weights.support = 0.0;
        c.health.weights.time_to_production = 1.0;
    }));
    super::account_with_contract(&mut r, T0, T0 + 400 * D);
    r.ingest(change("c", T0 + H, "t", UsageKind::ChangeCreated, "c1", None, "app-1"));
    r.advance(T0 + 2 * D);
    assert!(r.out.scores.iter().all(|s| !s.components.contains_key("time_to_production")));
    // its production deploy, 9 hours after it was created, is read two ticks late
    let deploy = change("d", T0 + 10 * H, "t", UsageKind::ChangeDeployed, "c1", Some("production"), "app-1");
    assert_eq!(r.ingest(deploy), Ingested::Late { tick: Tick(T0 + D) });
    assert_eq!(r.out.paired_ttp_ms, vec![9 * H]);
    assert!(r.alerts(AlertKind::OnboardingMilestone).is_empty(), "nothing fires before the next tick");
    r.advance(T0 + 3 * D);
    let s = r.score_of(Level::Team, "t", T0 + 3 * D).expect("scored once the pair is seen");
    assert_eq!(s.components.get("time_to_production"), Some(&100.0), "9 hours: elite");
    let m = r.alerts(AlertKind::OnboardingMilestone);
    assert_eq!(m.iter().map(|a| a.at).collect::<Vec<_>>(), vec![T0 + 3 * D], "the first tick that has seen it");
    assert!(m[0].reasons[0].starts_with("First application in production (app-1) 10.0 hours after"), "{:?}", m[0]);
}

#[test]
fn a_resolved_ticket_is_kept_while_a_late_event_can_still_reach_it() {
    // every tick evaluated (and pruned), none skipped as quiet
    let mut c = (*cfg(|c| c.health.weights = only("support"))).clone();
    c.skip_quiet = false;
    let mut r = Run::new(Arc::new(c));
    r.ingest(ticket("o", T0 + H, Some("t"), SupportKind::TicketOpened, "T", Some(2)));
    r.ingest(ticket("r", T0 + 2 * H, Some("t"), SupportKind::TicketResolved, "T", None));
    r.advance(T0 + 45 * D);
    // 45 days on (past the 30 days a resolved ticket is otherwise kept), an escalation of
    // the resolved ticket is read: it raises its alert, and does not reopen the ticket
    let esc = r.ingest(ticket("e", T0 + 3 * H, Some("t"), SupportKind::TicketEscalated, "T", Some(1)));
    assert!(esc.is_late() && esc.is_accepted(), "{esc:?}");
    assert_eq!(r.alerts(AlertKind::SupportEscalation).len(), 1);
    r.advance(T0 + 46 * D);
    assert_eq!(score_as_of(&r, Level::Team, "t", T0 + 46 * D), Some(100.0), "no ticket open: {:?}", r.out.scores);
}

#[test]
fn a_late_event_of_a_new_team_creates_it_from_the_next_tick() {
    let mut r = Run::new(cfg(|_| {}));
    r.ingest(usage("1", T0 + H, "a", "t", Some("u1")));
    r.advance(T0 + 2 * D);
    assert!(r.ingest(usage("2", T0 + 2 * H, "a", "t2", Some("u2"))).is_late());
    r.advance(T0 + 3 * D);
    let t2: Vec<i64> = r.out.scores.iter().filter(|s| s.entity.id == "t2").map(|s| s.at).collect();
    assert_eq!(t2, vec![T0 + 3 * D], "evaluated from the next tick on, never before");
}

#[test]
fn a_lone_change_half_is_kept_while_a_late_partner_can_still_reach_it() {
    let mut c = (*cfg(|_| {})).clone();
    c.skip_quiet = false;
    let mut r = Run::new(Arc::new(c));
    r.ingest(change("c", T0 + H, "t", UsageKind::ChangeCreated, "c1", None, "app"));
    r.advance(T0 + 100 * D);
    assert_eq!(r.out.expired_changes, 0, "a deploy up to 90 days late may still come");
    // its deploy, 50 days after it was created (within the 90-day TTL), read 50 days late
    let deploy = change("d", T0 + 50 * D, "t", UsageKind::ChangeDeployed, "c1", Some("production"), "app");
    assert!(r.ingest(deploy).is_late());
    assert_eq!(r.out.paired_ttp_ms, vec![50 * D - H]);
}
