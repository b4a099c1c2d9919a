//! A set of time buckets in which something (a user, a feature) was active.

/// Sorted, deduplicated bucket indices (bucket = `granularity_ms` of event time).
///
/// Windows are half-open `[lo, hi)` in bucket units. Because every window boundary
/// cs-pulse asks about is a multiple of the bucket granularity, answers are exact.
///
/// ```
/// use cs_pulse::window::ActivitySet;
/// let mut a = ActivitySet::default();
/// a.insert(5);
/// a.insert(2);
/// a.insert(5);
/// assert!(a.any_in(2, 3));
/// assert!(!a.any_in(3, 5));
/// assert_eq!(a.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ActivitySet {
    buckets: Vec<u32>,
}

impl ActivitySet {
    /// Adds a bucket. In-order inserts (the common case) are O(1).
    pub fn insert(&mut self, bucket: u32) {
        match self.buckets.last() {
            Some(&last) if last == bucket => {}
            Some(&last) if last < bucket => self.buckets.push(bucket),
            None => self.buckets.push(bucket),
            _ => {
                if let Err(pos) = self.buckets.binary_search(&bucket) {
                    self.buckets.insert(pos, bucket);
                }
            }
        }
    }

    /// Whether any bucket lies in `[lo, hi)`.
    pub fn any_in(&self, lo: u32, hi: u32) -> bool {
        let i = self.buckets.partition_point(|&b| b < lo);
        self.buckets.get(i).is_some_and(|&b| b < hi)
    }

    /// The buckets in `[lo, hi)`, in order.
    pub fn range(&self, lo: u32, hi: u32) -> &[u32] {
        let i = self.buckets.partition_point(|&b| b < lo);
        let j = self.buckets.partition_point(|&b| b < hi);
        &self.buckets[i..j.max(i)]
    }

    /// Drops buckets before `lo`.
    pub fn prune_before(&mut self, lo: u32) {
        let i = self.buckets.partition_point(|&b| b < lo);
        if i > 0 {
            self.buckets.drain(..i);
        }
    }

    /// Number of buckets held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_inserts_stay_sorted() {
        let mut a = ActivitySet::default();
        for b in [10, 3, 7, 3, 12, 1, 10] {
            a.insert(b);
        }
        assert_eq!(a.range(0, 100), &[1, 3, 7, 10, 12]);
        assert_eq!(a.range(3, 10), &[3, 7]);
        assert!(a.range(13, 20).is_empty());
    }

    #[test]
    fn half_open_windows() {
        let mut a = ActivitySet::default();
        a.insert(10);
        assert!(a.any_in(10, 11));
        assert!(!a.any_in(11, 20));
        assert!(!a.any_in(0, 10));
    }

    #[test]
    fn prune() {
        let mut a = ActivitySet::default();
        for b in 0..10 {
            a.insert(b);
        }
        a.prune_before(8);
        assert_eq!(a.range(0, 100), &[8, 9]);
        a.prune_before(100);
        assert!(a.is_empty());
    }
}
