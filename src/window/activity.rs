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
///
/// Serialized as the first bucket followed by the gaps between neighbours, so that runs
/// of adjacent buckets cost one byte each in a varint encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivitySet {
    buckets: Vec<u32>,
}

impl ActivitySet {
    /// Adds a bucket; returns whether it was new. In-order inserts (the common case) are
    /// O(1).
    pub fn insert(&mut self, bucket: u32) -> bool {
        match self.buckets.last() {
            Some(&last) if last == bucket => false,
            Some(&last) if last < bucket => {
                self.buckets.push(bucket);
                true
            }
            None => {
                self.buckets.push(bucket);
                true
            }
            _ => match self.buckets.binary_search(&bucket) {
                Ok(_) => false,
                Err(pos) => {
                    self.buckets.insert(pos, bucket);
                    true
                }
            },
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

impl serde::Serialize for ActivitySet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.buckets.len()))?;
        let mut prev = 0;
        for &b in &self.buckets {
            seq.serialize_element(&(b - prev))?;
            prev = b;
        }
        seq.end()
    }
}

impl<'de> serde::Deserialize<'de> for ActivitySet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Gaps;
        impl<'de> serde::de::Visitor<'de> for Gaps {
            type Value = ActivitySet;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a first bucket and the gaps to the next ones")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ActivitySet, A::Error> {
                let mut buckets = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                let mut prev: u32 = 0;
                while let Some(gap) = seq.next_element::<u32>()? {
                    if gap == 0 && !buckets.is_empty() {
                        return Err(serde::de::Error::custom("buckets repeat"));
                    }
                    prev = prev.checked_add(gap).ok_or_else(|| serde::de::Error::custom("bucket out of range"))?;
                    buckets.push(prev);
                }
                Ok(ActivitySet { buckets })
            }
        }
        d.deserialize_seq(Gaps)
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

    #[test]
    fn insert_says_whether_new() {
        let mut a = ActivitySet::default();
        assert!(a.insert(5));
        assert!(!a.insert(5));
        assert!(a.insert(2));
        assert!(!a.insert(2));
        assert!(a.insert(9));
    }

    #[test]
    fn serialized_as_gaps_and_read_back() {
        let mut a = ActivitySet::default();
        for b in [400_000, 400_001, 400_002, 400_010] {
            a.insert(b);
        }
        assert_eq!(serde_json::to_string(&a).unwrap(), "[400000,1,1,8]");
        let back: ActivitySet = serde_json::from_str("[400000,1,1,8]").unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<ActivitySet>("[4,0]").is_err(), "a repeated bucket is refused");
        assert!(serde_json::from_str::<ActivitySet>("[4294967295,1]").is_err(), "overflow is refused");
    }
}
