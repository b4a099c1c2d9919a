//! Input events and dimension records, decoded and validated.

use serde::{Deserialize, Serialize};

/// What a usage event means to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsageKind {
    /// A developer created a change (needs `change_id`).
    ChangeCreated,
    /// A change was deployed (needs `change_id`, `environment`, `app_id`).
    ChangeDeployed,
    /// Any other type: plain product usage.
    Other,
}

/// A product-usage event from `cs.usage.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// Producer-assigned id.
    pub event_id: String,
    /// Event time, epoch ms.
    pub occurred_at: i64,
    /// The customer.
    pub account_id: String,
    /// The team the user acted in.
    pub team_id: String,
    /// The acting user; `None` for system events such as a CI deploy.
    pub user_id: Option<String>,
    /// The `type` field as sent.
    pub event_type: String,
    /// What the type means.
    pub kind: UsageKind,
    /// The product feature used.
    pub feature: Option<String>,
    /// The customer's application.
    pub app_id: Option<String>,
    /// The change (commit, merge request) this event belongs to.
    pub change_id: Option<String>,
    /// Deployment environment (`production` counts for the magic number).
    pub environment: Option<String>,
}

/// Ticket priority, P1 (most severe) to P4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Priority(pub u8);

impl Priority {
    /// Parses `P1`..`P4`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "P1" => Some(Self(1)),
            "P2" => Some(Self(2)),
            "P3" => Some(Self(3)),
            "P4" => Some(Self(4)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P{}", self.0)
    }
}

/// The kind of a support event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupportKind {
    /// A ticket was opened (carries priority).
    TicketOpened,
    /// A ticket was escalated (carries priority).
    TicketEscalated,
    /// A ticket was resolved.
    TicketResolved,
    /// A resolved ticket was reopened.
    TicketReopened,
    /// A CSAT survey answer, 1-5.
    CsatResponse,
    /// An NPS survey answer, 0-10.
    NpsResponse,
}

impl SupportKind {
    /// Parses the spec's `kind` strings.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ticket_opened" => Self::TicketOpened,
            "ticket_escalated" => Self::TicketEscalated,
            "ticket_resolved" => Self::TicketResolved,
            "ticket_reopened" => Self::TicketReopened,
            "csat_response" => Self::CsatResponse,
            "nps_response" => Self::NpsResponse,
            _ => return None,
        })
    }

    /// Whether the kind is about a ticket (and so needs `ticket_id`).
    pub fn is_ticket(self) -> bool {
        matches!(self, Self::TicketOpened | Self::TicketEscalated | Self::TicketResolved | Self::TicketReopened)
    }
}

/// A support or feedback event from `cs.support.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupportEvent {
    /// Producer-assigned id.
    pub event_id: String,
    /// Event time, epoch ms.
    pub occurred_at: i64,
    /// The customer.
    pub account_id: String,
    /// The team, when known; otherwise the event counts for the account only.
    pub team_id: Option<String>,
    /// What happened.
    pub kind: SupportKind,
    /// The ticket, for ticket kinds.
    pub ticket_id: Option<String>,
    /// Priority, for opened and escalated tickets.
    pub priority: Option<Priority>,
    /// The survey score, for csat and nps responses.
    pub score: Option<u8>,
    /// The user, when known.
    pub user_id: Option<String>,
}

/// A decoded input event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// From the usage topic.
    Usage(UsageEvent),
    /// From the support topic.
    Support(SupportEvent),
}

impl Event {
    /// Event time, epoch ms.
    pub fn occurred_at(&self) -> i64 {
        match self {
            Event::Usage(e) => e.occurred_at,
            Event::Support(e) => e.occurred_at,
        }
    }

    /// [`Event::occurred_at`] as the engine's API takes it.
    pub fn event_time(&self) -> crate::time::EventTime {
        crate::time::EventTime(self.occurred_at())
    }

    /// The customer.
    pub fn account_id(&self) -> &str {
        match self {
            Event::Usage(e) => &e.account_id,
            Event::Support(e) => &e.account_id,
        }
    }

    /// The producer's event id.
    pub fn event_id(&self) -> &str {
        match self {
            Event::Usage(e) => &e.event_id,
            Event::Support(e) => &e.event_id,
        }
    }
}

/// An account (contract) record from `cs.accounts.v1`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The customer.
    pub account_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Segment, e.g. enterprise, mid_market, smb (selects health overrides).
    pub segment: Option<String>,
    /// Licensed seats.
    pub seats: Option<u64>,
    /// Contract start, epoch ms.
    pub contract_start: Option<i64>,
    /// Renewal date, epoch ms.
    pub renewal_date: Option<i64>,
}

/// A team record from `cs.teams.v1`: the team's place in the org chart.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TeamRecord {
    /// The team.
    pub team_id: String,
    /// The customer.
    pub account_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Group name, unique within the account.
    pub group: Option<String>,
    /// Business unit name, unique within the account.
    pub business_unit: Option<String>,
    /// Division name, unique within the account.
    pub division: Option<String>,
    /// Seats assigned to the team.
    pub seats: Option<u64>,
}
