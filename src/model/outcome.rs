//! What customers did: the outcomes a backtest compares the health model with.

/// What a customer did at the end of a contract term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Renewed as it was.
    Renewed,
    /// Renewed and bought more.
    Expanded,
    /// Renewed and bought less.
    Contracted,
    /// Left.
    Churned,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 4] = [Outcome::Renewed, Outcome::Expanded, Outcome::Contracted, Outcome::Churned];

    /// Its name, as in the outcomes file.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Renewed => "renewed",
            Outcome::Expanded => "expanded",
            Outcome::Contracted => "contracted",
            Outcome::Churned => "churned",
        }
    }

    /// The outcome named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// A line of a backtest's outcomes file: what an account did, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutcomeRecord {
    /// The account.
    pub account_id: String,
    /// When, epoch ms.
    pub at: i64,
    /// What it did.
    pub outcome: Outcome,
}
