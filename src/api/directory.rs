//! What this instance can answer for: the views of the accounts of the input partitions it
//! owns, as of their last committed batch.
//!
//! The pipeline writes it ([`Directory::assigned`] when a partition arrives,
//! [`Directory::publish`] after a restore and after each committed batch,
//! [`Directory::revoked`] when one leaves); the HTTP handlers read it. A partition that is
//! still being restored is owned but not ready: an account it may hold gets a 503 with
//! `Retry-After`, never an answer from partial state.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::engine::view::AccountView;
use crate::hash::HashMap;

/// An owned input partition.
#[derive(Debug, Default)]
struct Owned {
    /// `None` while its state is restored; the last evaluated tick once ready (`Some(None)`
    /// before its first tick).
    as_of: Option<Option<i64>>,
    accounts: HashMap<Arc<str>, Arc<AccountView>>,
}

/// The input partitions this instance owns and their accounts' views.
#[derive(Debug, Default)]
pub struct Directory {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    owned: BTreeMap<i32, Owned>,
    /// Input partitions in all (of each input topic), once known.
    partitions: Option<i32>,
}

/// An account found here.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its view.
    pub view: Arc<AccountView>,
    /// The last tick its partition evaluated (the answer's `as_of`).
    pub as_of: Option<i64>,
}

/// Which partitions this instance answers for now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Owned and restored.
    pub ready: Vec<i32>,
    /// Owned, state still being restored.
    pub restoring: Vec<i32>,
    /// Input partitions in all, once known.
    pub partitions: Option<i32>,
}

impl Directory {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records how many input partitions there are.
    pub fn set_partitions(&self, n: i32) {
        self.write().partitions = Some(n);
    }

    /// Partition `p` is now owned; its state is being restored.
    pub fn assigned(&self, p: i32) {
        self.write().owned.insert(p, Owned::default());
    }

    /// Partition `p` is no longer owned.
    pub fn revoked(&self, p: i32) {
        self.write().owned.remove(&p);
    }

    /// Nothing is owned any more (the consumer stopped).
    pub fn clear(&self) {
        self.write().owned.clear();
    }

    /// Partition `p` is ready as of tick `as_of` with these views: with `replace`, they are
    /// all of its accounts (after a restore); otherwise they replace those of the same
    /// accounts (after a batch). A partition not owned (revoked meanwhile) is left alone.
    pub fn publish(&self, p: i32, as_of: Option<i64>, views: Vec<Arc<AccountView>>, replace: bool) {
        let mut inner = self.write();
        let Some(owned) = inner.owned.get_mut(&p) else { return };
        if replace {
            owned.accounts.clear();
        }
        owned.as_of = Some(as_of);
        for v in views {
            owned.accounts.insert(Arc::from(v.account_id.as_str()), v);
        }
    }

    /// The account if a ready partition holds it; otherwise which partitions answered for
    /// its absence. One look, so that a partition turning ready in between cannot make a
    /// missing account look unknown.
    pub fn find_or_coverage(&self, account_id: &str) -> Result<Found, Coverage> {
        let inner = self.read();
        match Self::find_in(&inner, account_id) {
            Some(f) => Ok(f),
            None => Err(Self::coverage_of(&inner)),
        }
    }

    /// The account, if an owned, ready partition holds it.
    fn find_in(inner: &Inner, account_id: &str) -> Option<Found> {
        inner.owned.values().find_map(|o| {
            let as_of = o.as_of?;
            o.accounts.get(account_id).map(|v| Found { view: Arc::clone(v), as_of })
        })
    }

    /// Every account of the ready partitions, and which partitions those are, at once.
    pub fn all_with_coverage(&self) -> (Vec<Found>, Coverage) {
        let inner = self.read();
        (Self::all_in(&inner), Self::coverage_of(&inner))
    }

    /// Every account of the ready partitions.
    pub fn all(&self) -> Vec<Found> {
        Self::all_in(&self.read())
    }

    fn all_in(inner: &Inner) -> Vec<Found> {
        let mut out = Vec::new();
        for o in inner.owned.values() {
            let Some(as_of) = o.as_of else { continue };
            out.extend(o.accounts.values().map(|v| Found { view: Arc::clone(v), as_of }));
        }
        out
    }

    /// Which partitions are ready and which are being restored.
    pub fn coverage(&self) -> Coverage {
        Self::coverage_of(&self.read())
    }

    fn coverage_of(inner: &Inner) -> Coverage {
        let mut c = Coverage { partitions: inner.partitions, ..Default::default() };
        for (p, o) in &inner.owned {
            if o.as_of.is_some() {
                c.ready.push(*p);
            } else {
                c.restoring.push(*p);
            }
        }
        c
    }
}

impl Coverage {
    /// Whether these partitions together are every input partition, all ready.
    pub fn is_complete(&self) -> bool {
        let Some(n) = self.partitions else { return false };
        self.restoring.is_empty() && (0..n).all(|p| self.ready.contains(&p))
    }

    /// Adds another instance's coverage.
    pub fn merge(&mut self, other: &Coverage) {
        self.ready.extend(&other.ready);
        self.restoring.extend(&other.restoring);
        self.partitions = self.partitions.max(other.partitions);
        // A partition one instance has ready and another still restores has moved: the
        // newer owner is restoring it.
        self.ready.retain(|p| !other.restoring.contains(p));
        self.ready.sort_unstable();
        self.ready.dedup();
        self.restoring.sort_unstable();
        self.restoring.dedup();
    }

    /// As a header value: `ready=0,1;restoring=2;of=3`.
    pub fn to_header(&self) -> String {
        let list = |v: &[i32]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        let of = self.partitions.map(|n| n.to_string()).unwrap_or_default();
        format!("ready={};restoring={};of={of}", list(&self.ready), list(&self.restoring))
    }

    /// Reads [`Coverage::to_header`]'s form; `None` when it is not that.
    pub fn from_header(s: &str) -> Option<Self> {
        let mut c = Coverage::default();
        for part in s.split(';') {
            let (k, v) = part.split_once('=')?;
            let list = || -> Option<Vec<i32>> {
                v.split(',').filter(|x| !x.is_empty()).map(|x| x.trim().parse().ok()).collect()
            };
            match k.trim() {
                "ready" => c.ready = list()?,
                "restoring" => c.restoring = list()?,
                "of" => c.partitions = if v.is_empty() { None } else { Some(v.trim().parse().ok()?) },
                _ => return None,
            }
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_complete_only_when_every_partition_is_ready_somewhere() {
        let mut a = Coverage { ready: vec![0], restoring: vec![], partitions: Some(2) };
        assert!(!a.is_complete());
        a.merge(&Coverage { ready: vec![1], restoring: vec![], partitions: Some(2) });
        assert!(a.is_complete());
        a.merge(&Coverage { ready: vec![], restoring: vec![1], partitions: Some(2) });
        assert!(!a.is_complete());
        assert_eq!(Coverage::from_header(&a.to_header()), Some(a.clone()));
        assert_eq!(Coverage::from_header("ready=x;of=2"), None);
        assert_eq!(Coverage::from_header("nonsense"), None);
        assert!(!Coverage::default().is_complete());
    }

    #[test]
    fn a_restoring_or_revoked_partition_answers_for_nothing() {
        let d = Directory::default();
        d.set_partitions(1);
        d.assigned(0);
        assert!(!d.coverage().is_complete());
        assert!(d.all().is_empty());
        d.publish(0, Some(5), Vec::new(), true);
        assert!(d.coverage().is_complete());
        d.revoked(0);
        assert_eq!(d.coverage(), Coverage { partitions: Some(1), ..Default::default() });
        // a publish for a partition no longer owned is dropped
        d.publish(0, Some(6), Vec::new(), true);
        assert!(d.coverage().ready.is_empty());
    }
}
