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

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
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

#[test]
fn a_groupby_of_a_group_per_row_holds_its_heap_under_the_limit_and_the_account() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let spec = outcore::datasets::GroupbySpec {
        rows: 1_000_000,
        k: 100,
        files: 4,
        seed: 7,
        null_percent: 0,
    };
    outcore::datasets::write_groupby(dir.path(), &spec).unwrap();
    let glob = format!("{}/*.csv", dir.path().display());
    let groups = |session: &outcore::Session| {
        session
            .read(&glob)
            .load()
            .unwrap()
            .groupby(&["id1", "id2", "id3", "id4", "id5", "id6"])
            .unwrap()
            .agg(&[outcore::agg::sum("v3"), outcore::agg::size()])
            .unwrap()
    };
    // The reference: every row's key counted in a hash map, the answer's rows
    // and its total count and sum of v3 compared.
    let roomy = outcore::Session::builder().with_threads(2).build().unwrap();
    let whole = groups(&roomy).compute().unwrap();
    let total = |b: &RecordBatch| -> (usize, i64, f64) {
        let n = b.column(7).as_any().downcast_ref::<Int64Array>().unwrap();
        let v = b.column(6).as_any().downcast_ref::<Float64Array>().unwrap();
        (
            b.num_rows(),
            n.iter().flatten().sum(),
            v.iter().flatten().sum(),
        )
    };
    let expected = total(&whole);
    assert_eq!(expected.1, 1_000_000);
    drop(whole);

    for limit in [16u64 << 20, 32 << 20] {
        let session = outcore::Session::builder()
            .with_threads(2)
            .memory_limit(limit)
            .build()
            .unwrap();
        let frame = groups(&session);
        let seen = Mutex::new((0usize, 0i64, 0f64));
        let (stats, heap) = peak_beyond(|| {
            frame
                .for_each_partition(&|_, b| {
                    let (r, n, v) = total(b);
                    let mut s = seen.lock().unwrap();
                    *s = (s.0 + r, s.1 + n, s.2 + v);
                    Ok(())
                })
                .unwrap()
        });
        let seen = seen.into_inner().unwrap();
        assert_eq!((seen.0, seen.1), (expected.0, expected.1), "at {limit}");
        assert!(
            (seen.2 - expected.2).abs() < 1e-6 * expected.2.abs(),
            "at {limit}"
        );
        // The rare path ran: the answer (about 70 MB) is far over the limit.
        assert!(stats.spilled_bytes > 0, "nothing spilled at {limit}");
        eprintln!(
            "limit {} MiB: heap peak {:.1} MiB, peak reserved {:.1} MiB",
            limit >> 20,
            heap as f64 / 1048576.0,
            stats.peak_reserved as f64 / 1048576.0
        );
        // Every operator reserves before it allocates: the heap stays within the
        // account, and the account within the limit but for what it must grant
        // past it (a lone finalize task's answer).
        assert!(
            heap as u64 <= stats.peak_reserved,
            "heap {heap} at {limit}: {stats:?}"
        );
        assert!(heap as u64 <= limit, "heap {heap} over the limit {limit}");
    }
}

/// A fixed xorshift stream: each call, the next number below `d`.
fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed;
    move |d| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % d
    }
}

/// A running table of many groups taken out as a stored partial: for each kind of
/// key (two strings, as db-benchmark's id1 and id2; one string; one integer), the
/// heap it holds beside the table is what it says it takes (the bytes a radix
/// fold reserves before taking a table out), and the partial, finalized, is a
/// naive map's sums. Two strings used to be written three times over beside the
/// table (as columns, as rows, then as the stored column): three times what
/// the table held, none of it reserved.
#[test]
fn taking_a_running_table_out_holds_what_it_says_beside_the_table() {
    use outcore::agg::AggregatePlan;
    use std::collections::HashMap;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rows = 300_000usize;
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Utf8, false),
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    // Keys drawn from a fixed xorshift stream: 1,000 names of `a` (one row in a
    // hundred null) and 100,000 of `b`, nearly every pair distinct.
    let mut draw = xorshift(0x9E37_79B9_7F4A_7C15);
    let (mut a, mut b, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..rows {
        let na = draw(1000);
        a.push((na % 100 != 7).then(|| format!("id{:06}", na * 7919 % 1000)));
        b.push(format!("name-{}", draw(100_000)));
        k.push(draw(200_000) as i64);
        v.push(i as i64 % 97);
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(a.clone())) as ArrayRef,
            Arc::new(StringArray::from(b.clone())),
            Arc::new(Int64Array::from(k.clone())),
            Arc::new(Int64Array::from(v.clone())),
        ],
    )
    .unwrap();
    let key = |i: usize, keys: &[&str]| -> String {
        keys.iter()
            .map(|c| match *c {
                "a" => a[i].clone().unwrap_or_else(|| "<null>".into()),
                "b" => b[i].clone(),
                _ => k[i].to_string(),
            })
            .collect::<Vec<_>>()
            .join("|")
    };
    for keys in [vec!["a", "b"], vec!["b"], vec!["k"]] {
        let mut expected: HashMap<String, i64> = HashMap::new();
        for i in 0..rows {
            *expected.entry(key(i, &keys)).or_default() += v[i];
        }
        let plan = Arc::new(
            AggregatePlan::new(
                &schema,
                keys.iter().map(|s| s.to_string()).collect(),
                vec![outcore::agg::sum("v")],
                true,
                false,
            )
            .unwrap(),
        );
        let mut table = plan.fold_table().unwrap().unwrap();
        // Two folds, as two chunks of one worker.
        table.fold(&batch.slice(0, rows / 2)).unwrap();
        table.fold(&batch.slice(rows / 2, rows - rows / 2)).unwrap();
        let held = table.size_bytes();
        let said = table.take_bytes().unwrap() as usize;
        let (partial, extra) = peak_beyond(|| table.take().unwrap());
        assert!(
            extra <= said + said / 10 + (64 << 10),
            "{keys:?}: taking out a table of {held} bytes held {extra} beside it, said {said}"
        );
        assert!(
            said <= held * 2,
            "{keys:?}: a table of {held} bytes says taking it out takes {said}"
        );
        let answer = plan.finalize_stored(&[&partial]).unwrap();
        assert_eq!(answer.num_rows(), expected.len(), "{keys:?}");
        let sums = answer
            .column(keys.len())
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let cell = |c: usize, r: usize| -> String {
            let col = answer.column(c);
            if col.is_null(r) {
                return "<null>".into();
            }
            match col.data_type() {
                DataType::Utf8 => col
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .value(r)
                    .to_string(),
                _ => col
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(r)
                    .to_string(),
            }
        };
        for r in 0..answer.num_rows() {
            let name = (0..keys.len())
                .map(|c| cell(c, r))
                .collect::<Vec<_>>()
                .join("|");
            assert_eq!(
                Some(&sums.value(r)),
                expected.get(&name),
                "{keys:?}: {name}"
            );
        }
        eprintln!(
            "{keys:?}: {} groups, table {:.1} MiB, taken out with {:.1} MiB beside it (said {:.1})",
            answer.num_rows(),
            held as f64 / 1048576.0,
            extra as f64 / 1048576.0,
            said as f64 / 1048576.0
        );
    }
}

/// A radix finalize task merges its parts whole when the account grants what
/// the parts say it takes (`finalize_work_bytes` of their bytes, and the answer
/// as the plan estimates it): the heap it holds beside the parts stays under
/// that, for two string keys with few, some and nearly no repeated groups, and
/// the answer has a naive set's groups and the rows' total.
#[test]
fn a_finalize_holds_no_more_than_its_task_reserves() {
    use outcore::agg::AggregatePlan;
    use std::collections::HashSet;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, false),
        Field::new("b", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
    ]));
    let mut draw = xorshift(0x9E37_79B9_7F4A_7C15);
    let plan = Arc::new(
        AggregatePlan::new(
            &schema,
            vec!["a".into(), "b".into()],
            vec![outcore::agg::sum("v")],
            true,
            true,
        )
        .unwrap(),
    );
    for (chunks, rows, distinct) in [
        (4usize, 100_000usize, 300u64),
        (8, 40_000, 1000),
        (8, 40_000, 100_000),
    ] {
        let mut parts = Vec::new();
        let mut pairs = HashSet::new();
        let mut total = 0i64;
        for _ in 0..chunks {
            let (mut a, mut b, mut v) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..rows {
                a.push(format!("id{:03}", draw(distinct)));
                b.push(format!("id{:03}", draw(distinct)));
                v.push(i as i64 % 5);
                total += i as i64 % 5;
                pairs.insert((a[i].clone(), b[i].clone()));
            }
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(a)) as ArrayRef,
                    Arc::new(StringArray::from(b)),
                    Arc::new(Int64Array::from(v)),
                ],
            )
            .unwrap();
            let mut table = plan.fold_table().unwrap().unwrap();
            table.fold(&batch).unwrap();
            parts.push(table.take().unwrap());
        }
        let bytes: usize = parts
            .iter()
            .map(outcore_storage::measure::batch_bytes)
            .sum();
        let parts: Vec<&RecordBatch> = parts.iter().collect();
        let reserved = outcore::agg::radix::finalize_work_bytes(bytes as u64)
            + plan.answer_bytes_stored(&parts);
        let (answer, extra) = peak_beyond(|| plan.finalize_stored(&parts).unwrap());
        assert!(
            extra as u64 <= reserved,
            "{distinct} keys a column: a finalize of {bytes} bytes of parts held {extra} beside them, reserving {reserved}"
        );
        assert_eq!(answer.num_rows(), pairs.len(), "{distinct}");
        let sums = answer
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(sums.iter().flatten().sum::<i64>(), total, "{distinct}");
        eprintln!(
            "{distinct} keys a column: parts {:.1} MiB, {} groups, finalize held {:.1} MiB beside them, reserving {:.1}",
            bytes as f64 / 1048576.0,
            answer.num_rows(),
            extra as f64 / 1048576.0,
            reserved as f64 / 1048576.0
        );
    }
}
