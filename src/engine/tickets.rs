//! Ticket lifecycles, folded as of a tick.

use serde::{Deserialize, Serialize};

use crate::model::{Priority, SupportEvent, SupportKind};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TicketEvent {
    at: i64,
    event_id: String,
    kind: SupportKind,
    priority: Option<Priority>,
    team_id: Option<String>,
}

/// A ticket's events, kept in event-time order so that its state at any tick is the fold
/// of the events before that tick, whatever order they arrived in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Ticket {
    events: Vec<TicketEvent>,
}

impl Ticket {
    /// Heap bytes of the ticket's events.
    pub(super) fn heap_bytes(&self) -> usize {
        self.events.capacity() * std::mem::size_of::<TicketEvent>()
            + self.events.iter().map(|e| e.event_id.len() + e.team_id.as_ref().map_or(0, String::len)).sum::<usize>()
    }

    pub(super) fn record(&mut self, s: &SupportEvent) {
        let ev = TicketEvent {
            at: s.occurred_at,
            event_id: s.event_id.clone(),
            kind: s.kind,
            priority: s.priority,
            team_id: s.team_id.clone(),
        };
        let pos = self.events.partition_point(|e| (e.at, e.event_id.as_str()) <= (ev.at, ev.event_id.as_str()));
        if pos > 0 && self.events[pos - 1].event_id == ev.event_id && self.events[pos - 1].at == ev.at {
            return; // the same event delivered twice
        }
        self.events.insert(pos, ev);
    }

    /// If the ticket is open at `tick` (by its events before `tick`) with a known
    /// priority: that priority and the team of its first event.
    ///
    /// Opened and reopened open it; resolved closes it; an escalation sets the priority
    /// and opens a ticket never seen before.
    pub(super) fn open_at(&self, tick: i64) -> Option<(Priority, Option<&str>)> {
        let mut open = false;
        let mut seen = false;
        let mut priority = None;
        let mut first_team = None;
        let mut resolved_at: Option<i64> = None;
        for e in self.events.iter().take_while(|e| e.at < tick) {
            // An event more than 30 days after the ticket was resolved starts a new ticket
            // under the same id: a function of event times alone, so pruning a resolved
            // ticket 30 days on changes nothing.
            if resolved_at.is_some_and(|r| e.at - r > super::RETAIN_MS) {
                (open, seen, priority, first_team) = (false, false, None, None);
            }
            resolved_at = (e.kind == SupportKind::TicketResolved).then_some(e.at);
            if !seen {
                first_team = e.team_id.as_deref();
            }
            match e.kind {
                SupportKind::TicketOpened | SupportKind::TicketReopened => open = true,
                SupportKind::TicketEscalated if !seen => open = true,
                SupportKind::TicketResolved => open = false,
                _ => {}
            }
            if e.priority.is_some() {
                priority = e.priority;
            }
            seen = true;
        }
        if open {
            priority.map(|p| (p, first_team))
        } else {
            None
        }
    }

    /// The time of its first event at or after `t`.
    pub(super) fn first_at_or_after(&self, t: i64) -> Option<i64> {
        let i = self.events.partition_point(|e| e.at < t);
        self.events.get(i).map(|e| e.at)
    }

    /// Whether the ticket is closed and its last event is before `before`.
    pub(super) fn expired(&self, before: i64) -> bool {
        match self.events.last() {
            Some(last) => last.at < before && last.kind == SupportKind::TicketResolved,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, at: i64, kind: SupportKind, p: Option<u8>, team: Option<&str>) -> SupportEvent {
        SupportEvent {
            event_id: id.into(),
            occurred_at: at,
            account_id: "a".into(),
            team_id: team.map(str::to_string),
            kind,
            ticket_id: Some("T".into()),
            priority: p.map(Priority),
            score: None,
            user_id: None,
        }
    }

    #[test]
    fn lifecycle_as_of_tick() {
        let mut t = Ticket::default();
        t.record(&ev("3", 30, SupportKind::TicketResolved, None, None));
        t.record(&ev("1", 10, SupportKind::TicketOpened, Some(3), Some("t1")));
        t.record(&ev("2", 20, SupportKind::TicketEscalated, Some(1), Some("t2")));
        t.record(&ev("4", 40, SupportKind::TicketReopened, None, None));
        assert_eq!(t.open_at(10), None);
        assert_eq!(t.open_at(11), Some((Priority(3), Some("t1"))));
        // escalation raises the priority; the ticket stays with its first event's team
        assert_eq!(t.open_at(21), Some((Priority(1), Some("t1"))));
        assert_eq!(t.open_at(31), None);
        assert_eq!(t.open_at(41), Some((Priority(1), Some("t1"))));
        assert!(!t.expired(1_000));
    }

    #[test]
    fn escalation_of_unseen_ticket_opens_it() {
        let mut t = Ticket::default();
        t.record(&ev("1", 10, SupportKind::TicketEscalated, Some(2), None));
        assert_eq!(t.open_at(11), Some((Priority(2), None)));
        t.record(&ev("0", 5, SupportKind::TicketResolved, None, None));
        // a resolution before it: the escalation re-raises priority but does not reopen
        assert_eq!(t.open_at(11), None);
    }

    #[test]
    fn duplicates_are_ignored_and_resolved_tickets_expire() {
        let mut t = Ticket::default();
        t.record(&ev("1", 10, SupportKind::TicketOpened, Some(2), None));
        t.record(&ev("1", 10, SupportKind::TicketOpened, Some(2), None));
        t.record(&ev("2", 20, SupportKind::TicketResolved, None, None));
        assert_eq!(t.events.len(), 2);
        assert!(t.expired(21));
        assert!(!t.expired(20));
    }

    #[test]
    fn reused_a_month_after_resolution_is_a_new_ticket() {
        let mut t = Ticket::default();
        t.record(&ev("1", 10, SupportKind::TicketOpened, Some(2), Some("t1")));
        t.record(&ev("2", 20, SupportKind::TicketResolved, None, None));
        let later = 20 + crate::engine::RETAIN_MS + 1;
        t.record(&ev("3", later, SupportKind::TicketOpened, Some(3), Some("t2")));
        assert_eq!(t.open_at(15), Some((Priority(2), Some("t1"))), "earlier ticks keep the old ticket");
        assert_eq!(t.open_at(later + 1), Some((Priority(3), Some("t2"))), "the reuse counts for its own team");
        let mut soon = Ticket::default();
        soon.record(&ev("1", 10, SupportKind::TicketOpened, Some(2), Some("t1")));
        soon.record(&ev("2", 20, SupportKind::TicketResolved, None, None));
        soon.record(&ev("3", 30, SupportKind::TicketReopened, None, Some("t2")));
        assert_eq!(soon.open_at(31), Some((Priority(2), Some("t1"))), "reopened within 30 days: the same ticket");
    }
}
