//! A hash table from short keys packed into one or two machine words to group
//! ids: open addressing with linear probing, each entry holding the packed key
//! beside its group, so a probe reads one entry and compares the words, with no
//! look-up into the groups' keys. Two key widths use it: a string key of at most
//! 15 bytes packed into 128 bits (see `grouper::pack_short`), and the pair of
//! column codes of a two-column key (`grouper::PairGrouper`).
//!
//! With a million groups the table is tens of MB, and a probe is a miss to main
//! memory; a table that hands back nothing but the group (hashbrown's, with the
//! key's bytes elsewhere) costs two or three dependent misses per row. Here the
//! caller [`prefetch`](PackedTable::prefetch)es the entry of a row some rows
//! ahead, so the misses of consecutive rows overlap (DuckDB probes its
//! aggregate hash table the same way, a vector of rows at a time).

/// A key packed into words: what an entry stores and compares.
pub trait PackedKey: Copy + PartialEq {
    /// The key of a free entry (any value: a free entry is told by its group).
    const ZERO: Self;
    /// The most entries in use, in eighths of the table: past it the table grows.
    /// Wide entries keep it low (fewer probes); narrow ones can afford more probes
    /// for less memory (12-byte entries at three quarters: about hashbrown's bytes).
    const LOAD_EIGHTHS: usize;
}

/// A short string's 128 bits, as two words (so that an entry is 24 bytes, not the
/// 32 a 16-byte-aligned `u128` would take).
impl PackedKey for [u64; 2] {
    const ZERO: Self = [0, 0];
    const LOAD_EIGHTHS: usize = 4;
}

/// A pair of column codes (an entry of 12 bytes).
impl PackedKey for [u32; 2] {
    const ZERO: Self = [0, 0];
    const LOAD_EIGHTHS: usize = 6;
}

/// An entry: the packed key and its group ([`EMPTY`]: a free entry).
#[derive(Clone, Copy)]
struct Entry<K> {
    key: K,
    group: u32,
}

const EMPTY: u32 = u32::MAX;

/// Packed keys to groups. Every key's hash is given by the caller and must be the
/// same each time (the table rehashes with [`rehash`](PackedTable::new)'s function
/// when it grows).
pub struct PackedTable<K: PackedKey> {
    /// A power of two of entries, at most [`PackedKey::LOAD_EIGHTHS`] of them used.
    entries: Vec<Entry<K>>,
    len: usize,
    rehash: fn(K) -> u64,
}

impl<K: PackedKey> PackedTable<K> {
    /// An empty table whose keys hash with `rehash` (the function the callers'
    /// hashes come from).
    pub fn new(rehash: fn(K) -> u64) -> PackedTable<K> {
        PackedTable {
            entries: Vec::new(),
            len: 0,
            rehash,
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry<K>>()
    }

    /// Asks the CPU to fetch the entry a key of `hash` probes first, so that a
    /// [`find_or_insert`](Self::find_or_insert) some rows later finds it in cache.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        if !self.entries.is_empty() {
            let i = hash as usize & (self.entries.len() - 1);
            prefetch_entry(self.entries.as_ptr().wrapping_add(i));
        }
    }

    /// The group of `key` (whose hash is `hash`), inserting it as group `next`
    /// when it is new; the flag says whether it was.
    #[inline]
    pub fn find_or_insert(&mut self, key: K, hash: u64, next: u32) -> (u32, bool) {
        if !self.has_room(self.len + 1) {
            self.grow(self.len + 1);
        }
        let mask = self.entries.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let e = &mut self.entries[i];
            if e.group == EMPTY {
                *e = Entry { key, group: next };
                self.len += 1;
                return (next, true);
            }
            if e.key == key {
                return (e.group, false);
            }
            i = (i + 1) & mask;
        }
    }

    /// Whether `keys` keys fit without growing.
    #[inline]
    fn has_room(&self, keys: usize) -> bool {
        8 * keys <= K::LOAD_EIGHTHS * self.entries.len()
    }

    /// Makes room for `more` keys beyond those held, without growing on the way.
    pub fn reserve(&mut self, more: usize) {
        if !self.has_room(self.len + more) {
            self.grow(self.len + more);
        }
    }

    /// Forgets every key, keeping the room.
    pub fn clear(&mut self) {
        self.entries.fill(Entry {
            key: K::ZERO,
            group: EMPTY,
        });
        self.len = 0;
    }

    /// Rebuilds the table with room for `keys` keys within its load.
    fn grow(&mut self, keys: usize) {
        let size = (8 * keys)
            .div_ceil(K::LOAD_EIGHTHS)
            .next_power_of_two()
            .max(16);
        let free = Entry {
            key: K::ZERO,
            group: EMPTY,
        };
        let old = std::mem::replace(&mut self.entries, vec![free; size]);
        let mask = size - 1;
        for e in old.into_iter().filter(|e| e.group != EMPTY) {
            let mut i = (self.rehash)(e.key) as usize & mask;
            while self.entries[i].group != EMPTY {
                i = (i + 1) & mask;
            }
            self.entries[i] = e;
        }
    }
}

/// Asks the CPU to bring the cache line of `p` in, without waiting for it.
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch_entry<K>(p: *const Entry<K>) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has (the intrinsic
    // is unsafe only for its target feature). A prefetch reads nothing into the
    // program and cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    // Many collisions on purpose: the probe sequence must still tell keys apart.
    fn weak_wide(k: [u64; 2]) -> u64 {
        (k[0] ^ k[1]) % 7
    }

    fn weak_pair(k: [u32; 2]) -> u64 {
        u64::from(k[0] ^ k[1]) % 7
    }

    fn wide(k: u64, round: u64) -> [u64; 2] {
        [k * 0x1_0000_0001, (round % 2) << 36]
    }

    fn pair(k: u64, round: u64) -> [u32; 2] {
        [k as u32, (round % 2) as u32]
    }

    /// Inserts keys `make(k, round)` for three rounds (the third repeating the
    /// first), checking every group against a naive map, then clears.
    fn check_against_naive<K: PackedKey + std::hash::Hash + Eq>(
        rehash: fn(K) -> u64,
        make: fn(u64, u64) -> K,
    ) {
        let mut t = PackedTable::new(rehash);
        let mut naive = std::collections::HashMap::new();
        for round in 0..3u64 {
            for k in 0..5000u64 {
                let key = make(k, round);
                let next = naive.len() as u32;
                let expected = *naive.entry(key).or_insert(next);
                t.prefetch(rehash(key));
                let (g, new) = t.find_or_insert(key, rehash(key), next);
                assert_eq!(g, expected);
                assert_eq!(new, g == next && naive.len() as u32 == next + 1);
            }
        }
        assert_eq!(t.len(), naive.len());
        assert_eq!(t.len(), 10_000);
        // Within its load: the table has room for its keys at LOAD_EIGHTHS.
        assert!(8 * t.len() <= K::LOAD_EIGHTHS * t.entries.len());
        assert!(t.size_bytes() >= t.entries.len() * std::mem::size_of::<Entry<K>>());
        t.clear();
        assert!(t.is_empty());
        let key = make(3, 0);
        assert_eq!(t.find_or_insert(key, rehash(key), 0), (0, true));
    }

    #[test]
    fn finds_what_it_inserted_through_growth_and_collisions() {
        check_against_naive(weak_wide, wide);
        check_against_naive(weak_pair, pair);
    }

    #[test]
    fn entries_are_as_narrow_as_their_keys() {
        assert_eq!(std::mem::size_of::<Entry<[u64; 2]>>(), 24);
        assert_eq!(std::mem::size_of::<Entry<[u32; 2]>>(), 12);
    }

    #[test]
    fn reserve_makes_room_up_front() {
        let mut t = PackedTable::new(weak_pair);
        t.reserve(1000);
        let size = t.size_bytes();
        for k in 0..1000u64 {
            let key = pair(k, 0);
            t.find_or_insert(key, weak_pair(key), k as u32);
        }
        assert_eq!(t.size_bytes(), size);
        let key = pair(999, 0);
        assert_eq!(t.find_or_insert(key, weak_pair(key), 5000), (999, false));
    }
}
