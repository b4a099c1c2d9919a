//! A set of time buckets in which something (a user, a feature) was active.

/// A set of bucket indices (bucket = `granularity_ms` of event time), held as sorted,
/// non-empty 32-bucket words: each entry is a word index (bucket / 32) in its high half
/// and a bit mask of the word's buckets in its low half.
///
/// Windows are half-open `[lo, hi)` in bucket units. Because every window boundary
/// cs-pulse asks about is a multiple of the bucket granularity, answers are exact.
///
/// A word costs 8 bytes whatever it holds: with hourly buckets, a user active 8 hours a
/// day for 30 days holds about 30 to 45 words (240 to 360 bytes) where a list of buckets
/// would hold 240 (960 bytes).
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
    /// Exactly as long as needed: a new word (at most one per 32 buckets) reallocates.
    words: Box<[u64]>,
}

const WORD_BITS: u32 = 32;

fn word_of(entry: u64) -> u32 {
    (entry >> 32) as u32
}

fn mask_of(entry: u64) -> u32 {
    entry as u32
}

fn entry(word: u32, mask: u32) -> u64 {
    (u64::from(word) << 32) | u64::from(mask)
}

/// The bits of word `word` that lie in `[lo, hi)` (`lo < hi`).
fn window_mask(word: u32, lo: u32, hi: u32) -> u32 {
    let from = if word == lo / WORD_BITS { lo % WORD_BITS } else { 0 };
    let to = if word == (hi - 1) / WORD_BITS { (hi - 1) % WORD_BITS + 1 } else { WORD_BITS };
    (((1u64 << to) - 1) & !((1u64 << from) - 1)) as u32
}

impl ActivitySet {
    /// Adds a bucket; returns whether it was new. In-order inserts (the common case) are
    /// O(1).
    pub fn insert(&mut self, bucket: u32) -> bool {
        let (word, bit) = (bucket / WORD_BITS, 1u32 << (bucket % WORD_BITS));
        let pos = match self.words.last() {
            Some(&last) if word_of(last) == word => self.words.len() - 1,
            Some(&last) if word_of(last) > word => match self.words.binary_search_by_key(&word, |&e| word_of(e)) {
                Ok(pos) => pos,
                Err(pos) => {
                    self.edit(|w| w.insert(pos, entry(word, bit)));
                    return true;
                }
            },
            _ => {
                self.edit(|w| w.push(entry(word, bit)));
                return true;
            }
        };
        let e = &mut self.words[pos];
        let new = mask_of(*e) & bit == 0;
        *e |= u64::from(bit);
        new
    }

    /// The entries that may hold buckets in `[lo, hi)`, each with its bits in the window.
    fn in_window(&self, lo: u32, hi: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let (first, last) = if lo < hi { (lo / WORD_BITS, (hi - 1) / WORD_BITS) } else { (1, 0) };
        let i = self.words.partition_point(|&e| word_of(e) < first);
        self.words[i..]
            .iter()
            .take_while(move |&&e| first <= last && word_of(e) <= last)
            .map(move |&e| (word_of(e), mask_of(e) & window_mask(word_of(e), lo, hi)))
    }

    /// Whether any bucket lies in `[lo, hi)`.
    pub fn any_in(&self, lo: u32, hi: u32) -> bool {
        self.in_window(lo, hi).any(|(_, m)| m != 0)
    }

    /// How many buckets lie in `[lo, hi)`.
    pub fn count_in(&self, lo: u32, hi: u32) -> usize {
        self.in_window(lo, hi).map(|(_, m)| m.count_ones() as usize).sum()
    }

    /// The buckets in `[lo, hi)`, in order.
    pub fn iter_in(&self, lo: u32, hi: u32) -> impl Iterator<Item = u32> + '_ {
        self.in_window(lo, hi).flat_map(|(word, mask)| bits(mask).map(move |b| word * WORD_BITS + b))
    }

    /// The last bucket before `hi`.
    pub fn last_before(&self, hi: u32) -> Option<u32> {
        let i = self.words.partition_point(|&e| word_of(e) < hi.div_ceil(WORD_BITS));
        self.words[..i].iter().rev().find_map(|&e| {
            let m = mask_of(e) & if word_of(e) == hi / WORD_BITS { (1u32 << (hi % WORD_BITS)) - 1 } else { u32::MAX };
            (m != 0).then(|| word_of(e) * WORD_BITS + (31 - m.leading_zeros()))
        })
    }

    /// Drops buckets before `lo`.
    pub fn prune_before(&mut self, lo: u32) {
        let word = lo / WORD_BITS;
        let mut i = self.words.partition_point(|&e| word_of(e) < word);
        if let Some(e) = self.words.get_mut(i).filter(|e| word_of(**e) == word) {
            let kept = mask_of(*e) & !((1u32 << (lo % WORD_BITS)) - 1);
            if kept == 0 {
                i += 1;
            } else {
                *e = entry(word, kept);
            }
        }
        if i > 0 {
            self.edit(|w| {
                w.drain(..i);
            });
        }
    }

    /// Number of buckets held.
    pub fn len(&self) -> usize {
        self.words.iter().map(|&e| mask_of(e).count_ones() as usize).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.words.len() * std::mem::size_of::<u64>()
    }

    fn edit(&mut self, f: impl FnOnce(&mut Vec<u64>)) {
        let mut words = std::mem::take(&mut self.words).into_vec();
        f(&mut words);
        self.words = words.into_boxed_slice();
    }

    fn all(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().flat_map(|&e| bits(mask_of(e)).map(move |b| word_of(e) * WORD_BITS + b))
    }
}

/// The set bits of a mask, lowest first.
fn bits(mut mask: u32) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let b = mask.trailing_zeros();
            mask &= mask - 1;
            b
        })
    })
}

impl serde::Serialize for ActivitySet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.len()))?;
        let mut prev = 0;
        for b in self.all() {
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
                let mut set = ActivitySet::default();
                let mut prev: u32 = 0;
                while let Some(gap) = seq.next_element::<u32>()? {
                    if gap == 0 && !set.is_empty() {
                        return Err(serde::de::Error::custom("buckets repeat"));
                    }
                    prev = prev.checked_add(gap).ok_or_else(|| serde::de::Error::custom("bucket out of range"))?;
                    set.insert(prev);
                }
                Ok(set)
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
        assert_eq!(a.iter_in(0, 100).collect::<Vec<_>>(), [1, 3, 7, 10, 12]);
        assert_eq!(a.iter_in(3, 10).collect::<Vec<_>>(), [3, 7]);
        assert_eq!(a.iter_in(13, 20).count(), 0);
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
        assert_eq!(a.iter_in(0, 100).collect::<Vec<_>>(), [8, 9]);
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

    /// Every query against a sorted set of the same buckets, over random inserts and
    /// prunes that cross word boundaries.
    #[test]
    fn agrees_with_a_plain_set() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..200 {
            let base = [0, 31, 1_000_000, u32::MAX - 300][round % 4];
            let mut a = ActivitySet::default();
            let mut model = std::collections::BTreeSet::new();
            for _ in 0..150 {
                let b = base + next(300) as u32;
                if next(10) == 0 {
                    a.prune_before(b);
                    model = model.split_off(&b);
                } else {
                    assert_eq!(a.insert(b), model.insert(b), "insert {b}");
                }
                let lo = base + next(300) as u32;
                let hi = lo.saturating_add(next(120) as u32);
                let want: Vec<u32> = model.range(lo..hi.max(lo)).copied().collect();
                assert_eq!(a.iter_in(lo, hi).collect::<Vec<_>>(), want, "[{lo}, {hi})");
                assert_eq!(a.any_in(lo, hi), !want.is_empty());
                assert_eq!(a.count_in(lo, hi), want.len());
                assert_eq!(a.last_before(hi), model.range(..hi).next_back().copied(), "last before {hi}");
                assert_eq!(a.len(), model.len());
                assert_eq!(a.is_empty(), model.is_empty());
            }
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<ActivitySet>(&json).unwrap(), a);
        }
    }

    #[test]
    fn a_word_holds_32_buckets() {
        let mut a = ActivitySet::default();
        for b in 64..96 {
            a.insert(b);
        }
        a.insert(96);
        assert_eq!(a.heap_bytes(), 16);
        assert_eq!(a.words.len(), 2, "32 adjacent buckets in one word, the 33rd in a second");
    }
}
