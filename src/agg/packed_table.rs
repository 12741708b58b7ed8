//! A hash table from short keys packed into 128 bits (string keys of at most 15
//! bytes, see `grouper::pack_short`) to group ids: open addressing with linear
//! probing, each entry holding the packed key beside its group, so a probe reads
//! one entry and compares two words, with no look-up into the groups' keys.
//!
//! With a million groups the table is tens of MB, and a probe is a miss to main
//! memory; a table that hands back nothing but the group (hashbrown's, with the
//! key's bytes elsewhere) costs two or three dependent misses per row. Here the
//! caller [`prefetch`](PackedTable::prefetch)es the entry of a row some rows
//! ahead, so the misses of consecutive rows overlap (DuckDB probes its
//! aggregate hash table the same way, a vector of rows at a time).

/// An entry: the packed key's two words and its group ([`EMPTY`]: a free entry).
#[derive(Clone, Copy)]
struct Entry {
    lo: u64,
    hi: u64,
    group: u32,
}

const EMPTY: u32 = u32::MAX;
const FREE: Entry = Entry {
    lo: 0,
    hi: 0,
    group: EMPTY,
};

/// Packed keys to groups. Every key's hash is given by the caller and must be the
/// same each time (the table rehashes with [`rehash`](PackedTable::new)'s function
/// when it grows).
pub struct PackedTable {
    /// A power of two of entries, at most half of them used.
    entries: Vec<Entry>,
    len: usize,
    rehash: fn(u128) -> u64,
}

impl PackedTable {
    /// An empty table whose keys hash with `rehash` (the function the callers'
    /// hashes come from).
    pub fn new(rehash: fn(u128) -> u64) -> PackedTable {
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
        self.entries.capacity() * std::mem::size_of::<Entry>()
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
    pub fn find_or_insert(&mut self, key: u128, hash: u64, next: u32) -> (u32, bool) {
        if 2 * (self.len + 1) > self.entries.len() {
            self.grow(self.len + 1);
        }
        let (lo, hi) = (key as u64, (key >> 64) as u64);
        let mask = self.entries.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let e = &mut self.entries[i];
            if e.group == EMPTY {
                *e = Entry {
                    lo,
                    hi,
                    group: next,
                };
                self.len += 1;
                return (next, true);
            }
            if e.lo == lo && e.hi == hi {
                return (e.group, false);
            }
            i = (i + 1) & mask;
        }
    }

    /// Makes room for `more` keys beyond those held, without growing on the way.
    pub fn reserve(&mut self, more: usize) {
        if 2 * (self.len + more) > self.entries.len() {
            self.grow(self.len + more);
        }
    }

    /// Forgets every key, keeping the room.
    pub fn clear(&mut self) {
        self.entries.fill(FREE);
        self.len = 0;
    }

    /// Rebuilds the table with room for `keys` keys at most half full.
    fn grow(&mut self, keys: usize) {
        let size = (2 * keys).next_power_of_two().max(16);
        let old = std::mem::replace(&mut self.entries, vec![FREE; size]);
        let mask = size - 1;
        for e in old.into_iter().filter(|e| e.group != EMPTY) {
            let key = (u128::from(e.hi) << 64) | u128::from(e.lo);
            let mut i = (self.rehash)(key) as usize & mask;
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
fn prefetch_entry(p: *const Entry) {
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

    fn weak_hash(k: u128) -> u64 {
        // Many collisions on purpose: the probe sequence must still tell keys apart.
        (k as u64) % 7
    }

    #[test]
    fn finds_what_it_inserted_through_growth_and_collisions() {
        let mut t = PackedTable::new(weak_hash);
        let mut naive = std::collections::HashMap::new();
        for round in 0..3u128 {
            for k in 0..5000u128 {
                let key = k * 0x1_0000_0001 + (round % 2) * (1 << 100);
                let next = naive.len() as u32;
                let expected = *naive.entry(key).or_insert(next);
                t.prefetch(weak_hash(key));
                let (g, new) = t.find_or_insert(key, weak_hash(key), next);
                assert_eq!(g, expected);
                assert_eq!(new, g == next && naive.len() as u32 == next + 1);
            }
        }
        assert_eq!(t.len(), naive.len());
        assert!(t.size_bytes() >= 2 * t.len() * std::mem::size_of::<Entry>());
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.find_or_insert(3, weak_hash(3), 0), (0, true));
    }

    #[test]
    fn reserve_makes_room_up_front() {
        let mut t = PackedTable::new(weak_hash);
        t.reserve(1000);
        let size = t.size_bytes();
        for k in 0..1000u128 {
            t.find_or_insert(k, weak_hash(k), k as u32);
        }
        assert_eq!(t.size_bytes(), size);
        assert_eq!(t.find_or_insert(999, weak_hash(999), 5000), (999, false));
    }
}
