//! What operators allocate at their peak, measured by a counting allocator: the
//! heap this binary's one test thread uses beside what it already held. Memory
//! claims that the account relies on (an operator holds no more than it reserves)
//! are checked here against the allocator rather than against estimates.
//!
//! One test per binary run would be exact; the tests here take a lock so that
//! they never measure each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, Schema};

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[allow(unsafe_code)]
// SAFETY: every call is passed to the system allocator unchanged; only the
// counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size > layout.size() {
                let now = NOW.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                NOW.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its answer with the most bytes the heap held beyond what
/// it held before `f` started.
fn peak_beyond<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = NOW.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

/// `parts` answers of a groupby by (s, k), each sorted by its keys, the keys of
/// part `p` those whose number is `p` modulo `parts` (disjoint, interleaved, as
/// a radix finalize's sub-parts are).
fn sorted_answers(parts: usize, rows: usize) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("s", DataType::Utf8, false),
        Field::new("k", DataType::Int64, false),
        Field::new("sum", DataType::Float64, false),
        Field::new("n", DataType::Int64, false),
    ]));
    (0..parts)
        .map(|p| {
            let ids: Vec<usize> = (0..rows).map(|i| i * parts + p).collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| format!("id{:010}", i / 7)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    ids.iter().map(|&i| (i % 7) as i64),
                )),
                Arc::new(Float64Array::from_iter_values(
                    ids.iter().map(|&i| i as f64 * 0.5),
                )),
                Arc::new(Int64Array::from_iter_values(
                    ids.iter().map(|&i| (i % 3) as i64),
                )),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect()
}

#[test]
fn merging_sorted_answers_holds_one_copy_beside_them_not_two_and_says_so() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let keys = [(0, SortOptions::default()), (1, SortOptions::default())];
    let answers = sorted_answers(8, 50_000);
    let answer_bytes: usize = answers
        .iter()
        .map(outcore_storage::measure::batch_bytes)
        .sum();
    let said = outcore::sort::merge_sorted_bytes(&answers, &keys) as usize;
    // The reference: everything concatenated, then sorted.
    let all = arrow::compute::concat_batches(&answers[0].schema(), &answers).unwrap();
    let expected = outcore::sort::sort_by_columns(&all, &keys).unwrap();
    drop(all);

    let (merged, extra) = peak_beyond(|| outcore::sort::merge_sorted(answers, &keys).unwrap());
    assert_eq!(merged, expected);
    // Holding the inputs, their keys in row format and the whole merged copy at
    // once took twice the answer beside the inputs; letting go of the keys
    // before copying and of each input column once copied, about one answer.
    assert!(
        extra < answer_bytes * 3 / 2,
        "the merge held {extra} bytes beside answers of {answer_bytes}"
    );
    // What a finalize task reserves for the merge covers what it holds.
    assert!(
        extra <= said + said / 10,
        "the merge held {extra} bytes beside its inputs but said {said}"
    );
}
