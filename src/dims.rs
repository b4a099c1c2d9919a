//! Dimension tables: accounts and teams, from their compacted topics or files.

use std::collections::BTreeSet;

use crate::hash::HashMap;

use crate::decode::Upsert;
use crate::model::{AccountRecord, TeamRecord};

/// The current account and team records.
#[derive(Debug, Clone, Default)]
pub struct Dimensions {
    accounts: HashMap<String, AccountRecord>,
    teams: HashMap<String, TeamRecord>,
    teams_by_account: HashMap<String, BTreeSet<String>>,
    /// Changes with every record applied; unique across the process, so that two tables
    /// share a version only while both are as created.
    version: u64,
}

/// The source of [`Dimensions::version`].
static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Dimensions {
    fn bump(&mut self) {
        self.version = VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Identifies the tables' content: it changes whenever a record is applied. The
    /// engine skips evaluations only while it is unchanged.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Applies an account record or its deletion.
    pub fn apply_account(&mut self, u: Upsert<AccountRecord>) {
        self.bump();
        match u {
            Upsert::Put(a) => {
                self.accounts.insert(a.account_id.clone(), a);
            }
            Upsert::Delete(id) => {
                self.accounts.remove(&id);
            }
        }
    }

    /// Applies a team record or its deletion.
    pub fn apply_team(&mut self, u: Upsert<TeamRecord>) {
        self.bump();
        let id = match &u {
            Upsert::Put(t) => t.team_id.clone(),
            Upsert::Delete(id) => id.clone(),
        };
        if let Some(old) = self.teams.remove(&id) {
            if let Some(set) = self.teams_by_account.get_mut(&old.account_id) {
                set.remove(&id);
            }
        }
        if let Upsert::Put(t) = u {
            self.teams_by_account.entry(t.account_id.clone()).or_default().insert(id.clone());
            self.teams.insert(id, t);
        }
    }

    /// An account's record.
    pub fn account(&self, account_id: &str) -> Option<&AccountRecord> {
        self.accounts.get(account_id)
    }

    /// A team's record, when it belongs to `account_id`.
    pub fn team(&self, account_id: &str, team_id: &str) -> Option<&TeamRecord> {
        self.teams.get(team_id).filter(|t| t.account_id == account_id)
    }

    /// The team records of an account, by team id.
    pub fn teams_of(&self, account_id: &str) -> impl Iterator<Item = &TeamRecord> {
        self.teams_by_account.get(account_id).into_iter().flatten().filter_map(|id| self.teams.get(id))
    }

    /// Number of account and team records held.
    pub fn len(&self) -> (usize, usize) {
        (self.accounts.len(), self.teams.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(id: &str, acct: &str) -> TeamRecord {
        TeamRecord { team_id: id.into(), account_id: acct.into(), ..Default::default() }
    }

    #[test]
    fn team_moves_between_accounts_and_deletes() {
        let mut d = Dimensions::default();
        d.apply_team(Upsert::Put(team("t1", "a")));
        d.apply_team(Upsert::Put(team("t2", "a")));
        assert_eq!(d.teams_of("a").count(), 2);
        d.apply_team(Upsert::Put(team("t1", "b")));
        assert_eq!(d.teams_of("a").count(), 1);
        assert!(d.team("a", "t1").is_none());
        assert!(d.team("b", "t1").is_some());
        d.apply_team(Upsert::Delete("t1".into()));
        assert_eq!(d.teams_of("b").count(), 0);
        assert_eq!(d.len(), (0, 1));
    }

    #[test]
    fn account_upsert_and_delete() {
        let mut d = Dimensions::default();
        d.apply_account(Upsert::Put(AccountRecord { account_id: "a".into(), seats: Some(3), ..Default::default() }));
        assert_eq!(d.account("a").and_then(|a| a.seats), Some(3));
        d.apply_account(Upsert::Delete("a".into()));
        assert!(d.account("a").is_none());
    }
}
