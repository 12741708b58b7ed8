//! Radix-partitioned aggregation (issue 12): a groupby's answer does not depend on
//! the strategy (the reduction tree, the `split_out` shuffle, or the radix strategy
//! chosen at run time), on the parts it chose, the partitions, the threads or a tiny
//! memory limit, and equals the naive reference; the radix path (`radix_parts` in
//! the run's stats) and spilling really ran. The holistic aggregations go the same
//! way. The bag's keyed operations are tested in `bag.rs`.

use std::path::Path;

use outcore::agg::{corr, median, nlargest, quantile, size, sum, AggSpec};
use outcore::frame::sort_batch;
use outcore::scheduler::{Mode, RunStats};
use outcore::{DataFrame, Session};
use proptest::prelude::*;

use crate::aggs::{nums, ref_corr, ref_quantile};
use crate::common::*;

fn fixture(seed: u64, rows: usize, nkeys: i64, nfiles: usize) -> (tempfile::TempDir, Table) {
    let mut o = GenOpts::new(rows).nulls(0.05, 0.1);
    o.nkeys = nkeys;
    let t = gen_table(seed, &o);
    let dir = tempfile::tempdir().unwrap();
    t.write_files(dir.path(), nfiles);
    (dir, t)
}

fn session_with(
    threads: usize,
    mode: Mode,
    blocksize: u64,
    limit: Option<u64>,
    spill: &Path,
) -> Session {
    let mut b = Session::builder()
        .with_threads(threads)
        .with_scheduler(mode)
        .with_blocksize(blocksize)
        .with_spill_dir(spill);
    if let Some(limit) = limit {
        b = b.tiny_memory_limit(limit);
    }
    b.build().unwrap()
}

fn plain_aggs() -> Vec<Agg> {
    vec![
        ("size", None),
        ("sum", Some("v")),
        ("mean", Some("x")),
        ("std", Some("x")),
        ("max", Some("x")),
        ("min", Some("s")),
        ("first", Some("s")),
        ("last", Some("v")),
        ("nunique", Some("s")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(8) })]

    /// The radix strategy against the tree, the shuffle and the reference, over few
    /// and many groups, three kinds of keys (integer, string, several: the three
    /// stored key forms), block sizes, threads, schedulers and a tiny limit.
    #[test]
    fn groupby_answers_do_not_depend_on_the_strategy(
        seed in any::<u64>(),
        rows in 1usize..800,
        nkeys in prop_oneof![Just(3i64), Just(60), Just(3000)],
        nfiles in 1usize..=4,
        blocksize in 300u64..6000,
        threads in 1usize..=4,
        sync in any::<bool>(),
        tiny in any::<bool>(),
        keep_null_keys in any::<bool>(),
    ) {
        let (dir, t) = fixture(seed, rows, nkeys, nfiles);
        let spill = tempfile::tempdir().unwrap();
        let mode = if sync { Mode::Sync } else { Mode::Parallel };
        let limit = tiny.then_some(256 << 10);
        let s = session_with(threads, mode, blocksize, limit, spill.path());
        let df = load_gen(&s, dir.path());
        let aggs = plain_aggs();
        let ctx = format!(
            "rows {rows}, nkeys {nkeys}, files {nfiles}, blocksize {blocksize}, threads {threads}, \
             {mode:?}, limit {limit:?}, keep_null_keys {keep_null_keys}"
        );
        for keys in [&["id"][..], &["name"], &["name", "id"]] {
            let group = || {
                let g = df.groupby(keys).unwrap();
                if keep_null_keys { g.keep_null_keys() } else { g }
            };
            let (radix, stats) = group().agg(&specs(&aggs)).unwrap().compute_with_stats().unwrap();
            check_groupby(&radix, &t, keys, &aggs, keep_null_keys, &format!("radix, {ctx}"));
            prop_assert!(stats.radix_parts >= 1, "{ctx}: the radix path did not run: {stats:?}");
            if tiny && rows > 200 {
                // A limit this small partitions even a few groups.
                prop_assert!(stats.radix_parts >= 2, "{ctx}: one merge under 256 KiB: {stats:?}");
            }
            let (tree, stats) = group()
                .split_out(1)
                .unwrap()
                .agg(&specs(&aggs))
                .unwrap()
                .compute_with_stats()
                .unwrap();
            prop_assert_eq!(stats.radix_parts, 0, "{}: split_out(1) ran radix", &ctx);
            // Equal up to float rounding (the merge order differs): both against the
            // reference.
            check_groupby(&tree, &t, keys, &aggs, keep_null_keys, &format!("tree, {ctx}"));
            let shuffled = group().split_out(3).unwrap().agg(&specs(&aggs)).unwrap().compute().unwrap();
            let by: Vec<(&str, bool)> = keys.iter().map(|k| (*k, true)).collect();
            check_groupby(&sort_batch(&shuffled, &by).unwrap(), &t, keys, &aggs, keep_null_keys, &format!("split_out 3, {ctx}"));
        }
    }
}

/// Aggregations whose states are of a fixed size and do not depend on the order
/// of the rows: chunks fold into running tables (one per worker) for these.
fn foldable_aggs() -> Vec<Agg> {
    vec![
        ("size", None),
        ("sum", Some("v")),
        ("mean", Some("x")),
        ("std", Some("x")),
        ("max", Some("x")),
        ("min", Some("v")),
        ("count", Some("s")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(8) })]

    /// Chunks folded into running tables, in whatever order the workers take
    /// them, answer as the reference does, over few and many groups, the three
    /// stored key forms, block sizes, threads, schedulers and a tiny limit; the
    /// running tables were made, and under the tiny limit with many groups the
    /// account refused them room, so they were taken out before the chunks were
    /// done (a table per worker could not hold every group).
    #[test]
    fn chunks_folded_into_running_tables_answer_as_the_reference(
        seed in any::<u64>(),
        rows in 2000usize..6000,
        nkeys in prop_oneof![Just(5i64), Just(3000), Just(1 << 40)],
        nfiles in 1usize..=4,
        blocksize in 2000u64..20000,
        threads in 1usize..=3,
        sync in any::<bool>(),
        tiny in any::<bool>(),
        keep_null_keys in any::<bool>(),
    ) {
        let (dir, t) = fixture(seed, rows, nkeys, nfiles);
        let spill = tempfile::tempdir().unwrap();
        let mode = if sync { Mode::Sync } else { Mode::Parallel };
        let limit = tiny.then_some(256 << 10);
        let s = session_with(threads, mode, blocksize, limit, spill.path());
        let df = load_gen(&s, dir.path());
        let aggs = foldable_aggs();
        let ctx = format!(
            "rows {rows}, nkeys {nkeys}, files {nfiles}, blocksize {blocksize}, threads {threads}, \
             {mode:?}, limit {limit:?}, keep_null_keys {keep_null_keys}"
        );
        for keys in [&["id"][..], &["name"], &["i", "name"]] {
            let g = df.groupby(keys).unwrap();
            let g = if keep_null_keys { g.keep_null_keys() } else { g };
            let (got, stats) = g.agg(&specs(&aggs)).unwrap().compute_with_stats().unwrap();
            let by: Vec<(&str, bool)> = keys.iter().map(|k| (*k, true)).collect();
            check_groupby(&sort_batch(&got, &by).unwrap(), &t, keys, &aggs, keep_null_keys, &format!("{keys:?}, {ctx}"));
            prop_assert!(stats.fold_tables >= 1, "{keys:?}, {ctx}: no running table: {stats:?}");
            prop_assert!(stats.fold_tables <= 4 * threads as u64, "{keys:?}, {ctx}: a table per chunk: {stats:?}");
            if tiny && keys[0] == "i" {
                // `i` is unique: thousands of groups, more than 256 KiB of tables.
                prop_assert!(stats.fold_flushes > 0, "{keys:?}, {ctx}: no table taken out: {stats:?}");
            }
        }
        prop_assert!(
            std::fs::read_dir(spill.path()).unwrap().next().is_none(),
            "spill files left behind"
        );
    }
}

/// `sum(v)` and `size()` by the unique key `i`, checked against the reference;
/// returns what the run did.
fn sum_and_size_by_unique_keys(df: &DataFrame, t: &Table, what: &str) -> RunStats {
    let aggs: Vec<Agg> = vec![("sum", Some("v")), ("size", None)];
    let (got, stats) = df
        .groupby(&["i"])
        .unwrap()
        .agg(&specs(&aggs))
        .unwrap()
        .compute_with_stats()
        .unwrap();
    check_groupby(
        &sort_batch(&got, &[("i", true)]).unwrap(),
        t,
        &["i"],
        &aggs,
        false,
        what,
    );
    stats
}

/// When the chunks hold nearly one group per row, folding turns itself off; the
/// tables made before that are taken out by the next chunks, not held (with
/// their share of the limit) until every chunk is done. Answers as the reference.
#[test]
fn running_tables_are_taken_out_once_folding_turns_off() {
    let (dir, t) = fixture(5, 120_000, 1 << 40, 2);
    let spill = tempfile::tempdir().unwrap();
    let s = session_with(2, Mode::Parallel, 48 << 10, None, spill.path());
    let df = load_gen(&s, dir.path());
    let stats = sum_and_size_by_unique_keys(&df, &t, "unique keys");
    assert!(stats.fold_tables >= 1, "no running table: {stats:?}");
    assert_eq!(
        stats.fold_flushes, stats.fold_tables,
        "a table held until the drains after folding turned off: {stats:?}"
    );
}

/// Under a limit too small for a running table to hold more than one chunk's
/// groups (unique keys), every table is taken out full after a single chunk, so
/// no fold ever lands in a table that held groups and folding cannot measure
/// itself: after a few such take-outs it turns off, and the chunks make their own
/// partials. Before, every chunk took a table out (two tables held all along).
/// Answers as the reference.
#[test]
fn folding_turns_off_when_each_table_fills_with_one_chunk() {
    let (dir, t) = fixture(9, 40_000, 1 << 40, 2);
    let spill = tempfile::tempdir().unwrap();
    let s = session_with(1, Mode::Sync, 16 << 10, Some(512 << 10), spill.path());
    let df = load_gen(&s, dir.path());
    let chunks = df.npartitions();
    let stats = sum_and_size_by_unique_keys(&df, &t, "unique keys, tiny limit");
    assert!(chunks >= 40, "{chunks} chunks");
    assert!(stats.fold_tables >= 1, "no running table: {stats:?}");
    assert!(
        stats.fold_flushes >= 4 && stats.fold_flushes <= 6,
        "{chunks} chunks: folding did not turn off after 4 single-chunk tables: {stats:?}"
    );
}

/// A chunk of distinct keys that fills more than half of an empty running table
/// turns folding off at once, and its table is taken out with that chunk (before,
/// tables were taken out full after each chunk until four in a row had been,
/// held meanwhile with their share of the limit). Answers as the reference.
#[test]
fn one_chunk_of_distinct_keys_filling_half_a_table_turns_folding_off() {
    let (dir, t) = fixture(11, 200_000, 1 << 40, 2);
    let spill = tempfile::tempdir().unwrap();
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel)] {
        let s = session_with(threads, mode, 1 << 20, Some(2 << 20), spill.path());
        let df = load_gen(&s, dir.path());
        let chunks = df.npartitions();
        let stats = sum_and_size_by_unique_keys(&df, &t, &format!("{mode:?}"));
        assert!(chunks >= 6, "{chunks} chunks");
        assert!(
            stats.fold_tables >= 1 && stats.fold_tables <= threads as u64,
            "{mode:?}: a table per thread at most: {stats:?}"
        );
        assert_eq!(
            stats.fold_flushes, stats.fold_tables,
            "{mode:?}: each table taken out with its first chunk, and no more: {stats:?}"
        );
    }
}

/// `first` and `last` need the chunks in order, so they do not fold: each chunk
/// makes its own partial, merged in chunk order, whatever the threads.
#[test]
fn first_and_last_keep_the_order_of_the_chunks() {
    let (dir, t) = fixture(21, 5000, 40, 4);
    let spill = tempfile::tempdir().unwrap();
    for threads in [1, 3] {
        let s = session_with(threads, Mode::Parallel, 4000, None, spill.path());
        let df = load_gen(&s, dir.path());
        let aggs: Vec<Agg> = vec![
            ("first", Some("v")),
            ("last", Some("x")),
            ("sum", Some("v")),
        ];
        let (got, stats) = df
            .groupby(&["id"])
            .unwrap()
            .agg(&specs(&aggs))
            .unwrap()
            .compute_with_stats()
            .unwrap();
        check_groupby(
            &got,
            &t,
            &["id"],
            &aggs,
            false,
            &format!("threads {threads}"),
        );
        assert!(stats.radix_parts >= 1, "{stats:?}");
        assert_eq!(stats.fold_tables, 0, "first/last folded: {stats:?}");
    }
}

/// Every key of the reference with its rows, for the holistic checks.
fn holistic_expected(t: &Table, keys: &[&str]) -> (Vec<Cell>, Vec<Cell>, Vec<Cell>) {
    let groups = ref_groups(t, keys, false);
    let med = groups
        .values()
        .map(|r| ref_quantile(nums(t, r, "x"), 0.5))
        .collect();
    let q25 = groups
        .values()
        .map(|r| ref_quantile(nums(t, r, "v"), 0.25))
        .collect();
    let c = groups.values().map(|r| ref_corr(t, r, "x", "v")).collect();
    (med, q25, c)
}

fn holistic_aggs() -> Vec<AggSpec> {
    vec![
        median("x"),
        quantile("v", 0.25).unwrap(),
        corr("x", "v"),
        size(),
        sum("v"),
    ]
}

/// Many groups under a tiny limit: the radix path splits the partials into several
/// parts that wait in the spill cache and are paged out and read back; median,
/// quantile and corr equal the reference, nlargest equals the tree's answer (itself
/// checked against the reference in `aggs.rs`), for 1 to 3 threads.
#[test]
fn holistic_aggregations_run_radix_partitioned_and_spill_under_a_tiny_limit() {
    let (dir, t) = fixture(12, 6000, 1000, 3);
    let spill = tempfile::tempdir().unwrap();
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel), (3, Mode::Parallel)] {
        let s = session_with(threads, mode, 1500, Some(256 << 10), spill.path());
        let df = load_gen(&s, dir.path());
        let ctx = format!("{threads} threads, {mode:?}");
        let (got, stats) = df
            .groupby(&["id"])
            .unwrap()
            .agg(&holistic_aggs())
            .unwrap()
            .compute_with_stats()
            .unwrap();
        assert!(stats.radix_parts >= 2, "{ctx}: not radix: {stats:?}");
        assert!(
            stats.spilled_values > 0,
            "{ctx}: nothing spilled: {stats:?}"
        );
        assert!(
            stats.read_back_bytes > 0,
            "{ctx}: nothing read back: {stats:?}"
        );
        let (med, q25, c) = holistic_expected(&t, &["id"]);
        assert_cells(&cells(&got, "median(x)"), &med, &format!("median, {ctx}"));
        assert_cells(
            &cells(&got, "quantile(v, 0.25)"),
            &q25,
            &format!("quantile, {ctx}"),
        );
        assert_cells(&cells(&got, "corr(x, v)"), &c, &format!("corr, {ctx}"));
        check_groupby(
            &got,
            &t,
            &["id"],
            &[("size", None), ("sum", Some("v"))],
            false,
            &ctx,
        );

        let top = |g: outcore::frame::GroupBy| g.agg(&[nlargest(2, "v"), size()]).unwrap();
        let (radix, stats) = top(df.groupby(&["name", "id"]).unwrap())
            .compute_with_stats()
            .unwrap();
        assert!(
            stats.radix_parts >= 2,
            "{ctx}: nlargest not radix: {stats:?}"
        );
        let tree = top(df.groupby(&["name", "id"]).unwrap().split_out(1).unwrap())
            .compute()
            .unwrap();
        assert_eq!(
            radix, tree,
            "{ctx}: nlargest differs between radix and the tree"
        );
    }
    assert!(
        std::fs::read_dir(spill.path()).unwrap().next().is_none(),
        "spill files left behind"
    );
}

/// Few groups are merged by one task (one part) and many groups are split into
/// parts: the switch is made from the measured partials, with nothing tuned (the
/// limit, 16 MB, only keeps the data of this test small: one merge takes up to
/// limit / 16 of partials).
#[test]
fn the_strategy_follows_the_measured_groups() {
    let (dir, t) = fixture(13, 40_000, 1 << 40, 4);
    let spill = tempfile::tempdir().unwrap();
    let s = session_with(2, Mode::Parallel, 64 << 10, Some(16 << 20), spill.path());
    let df = load_gen(&s, dir.path());
    let (few, stats) = df
        .groupby(&["name"])
        .unwrap()
        .agg(&[sum("v")])
        .unwrap()
        .compute_with_stats()
        .unwrap();
    assert_eq!(stats.radix_parts, 1, "few groups: {stats:?}");
    check_groupby(
        &few,
        &t,
        &["name"],
        &[("sum", Some("v"))],
        false,
        "few groups",
    );
    // `i` is unique: 20,000 groups.
    let (many, stats) = df
        .groupby(&["i", "name"])
        .unwrap()
        .agg(&[sum("v"), size()])
        .unwrap()
        .compute_with_stats()
        .unwrap();
    check_groupby(
        &many,
        &t,
        &["i", "name"],
        &[("sum", Some("v")), ("size", None)],
        false,
        "many groups",
    );
    assert!(stats.radix_parts >= 4, "many groups: {stats:?}");
}

/// Parts too large for the account: two chunks and one thread cap the parts at
/// two (the slots), so each part holds about one chunk's partial (about 100 to
/// 180 KiB here), and under a 192 KiB limit the account refuses a finalize task's
/// table and answer (twice its part): each part is merged in sub-parts by more
/// hash bits, one at a time. The answer equals the reference (sorted by key, nulls
/// last) for integer and several keys, with plain and holistic aggregations, and
/// the split path ran. Fixed seeds and sizes (not a property test): the sizes must
/// stay between half the limit and the limit for the path to run.
#[test]
fn a_part_the_account_refuses_is_merged_in_sub_parts() {
    for (seed, rows, sync, keep_null_keys) in [
        (1u64, 2800usize, true, false),
        (2, 2800, false, true),
        (3, 2600, true, true),
        (4, 3000, false, false),
    ] {
        let threads = 1;
        let (dir, t) = fixture(seed, rows, 1 << 40, 2);
        let spill = tempfile::tempdir().unwrap();
        let mode = if sync { Mode::Sync } else { Mode::Parallel };
        let s = session_with(threads, mode, 1 << 20, Some(192 << 10), spill.path());
        let df = load_gen(&s, dir.path());
        let aggs: Vec<Agg> = vec![
            ("size", None),
            ("sum", Some("v")),
            ("mean", Some("x")),
            ("first", Some("s")),
        ];
        let ctx = format!("seed {seed}, rows {rows}, {mode:?}, keep_null_keys {keep_null_keys}");
        for keys in [&["i"][..], &["id", "name"]] {
            let g = df.groupby(keys).unwrap();
            let g = if keep_null_keys {
                g.keep_null_keys()
            } else {
                g
            };
            let mut specs = specs(&aggs);
            specs.push(median("x"));
            let (got, stats) = g.agg(&specs).unwrap().compute_with_stats().unwrap();
            check_groupby(
                &got,
                &t,
                keys,
                &aggs,
                keep_null_keys,
                &format!("{keys:?}, {ctx}"),
            );
            let med = reference_medians(&t, keys, keep_null_keys);
            assert_cells(
                &cells(&got, "median(x)"),
                &med,
                &format!("median by {keys:?}, {ctx}"),
            );
            assert!(stats.radix_parts >= 2, "{keys:?}, {ctx}: {stats:?}");
            assert!(
                stats.radix_splits > 0,
                "{keys:?}, {ctx}: no part was merged in sub-parts: {stats:?}"
            );
        }
        assert!(
            std::fs::read_dir(spill.path()).unwrap().next().is_none(),
            "spill files left behind"
        );
    }
}

/// The median of `x` in each of the reference's groups (null keys kept when asked).
fn reference_medians(t: &Table, keys: &[&str], keep_null_keys: bool) -> Vec<Cell> {
    ref_groups(t, keys, keep_null_keys)
        .values()
        .map(|r| ref_quantile(nums(t, r, "x"), 0.5))
        .collect()
}

/// A large answer (partials past a quarter of the limit) is one partition per part,
/// each sorted by key, so it is never held whole; gathering the frame merges them
/// in key order. A small answer is merged whole into the last partition, the others
/// empty. Either way the frame has the partitions it says.
#[test]
fn a_large_answer_is_a_sorted_partition_per_part_and_a_small_one_is_gathered() {
    let (dir, t) = fixture(14, 3000, 1 << 40, 2);
    let spill = tempfile::tempdir().unwrap();
    let s = session_with(2, Mode::Parallel, 8000, Some(256 << 10), spill.path());
    let df = load_gen(&s, dir.path());
    let aggs: Vec<Agg> = vec![("size", None), ("sum", Some("v"))];
    let many = df.groupby(&["i"]).unwrap().agg(&specs(&aggs)).unwrap();
    let (parts, stats) = many.compute_partitions().unwrap();
    assert_eq!(parts.len(), many.npartitions());
    let full: Vec<&arrow::array::RecordBatch> = parts.iter().filter(|p| p.num_rows() > 0).collect();
    assert!(
        full.len() >= 2,
        "one partition for a large answer: {stats:?}"
    );
    for p in &full {
        assert_eq!(
            sort_batch(p, &[("i", true)]).unwrap(),
            (*p).clone(),
            "a part is not sorted by key"
        );
    }
    let rows: usize = full.iter().map(|p| p.num_rows()).sum();
    assert_eq!(rows, 3000);
    check_groupby(
        &many.compute().unwrap(),
        &t,
        &["i"],
        &aggs,
        false,
        "many groups, gathered",
    );
    let head = many.head(5).unwrap();
    assert_eq!(
        head,
        many.compute().unwrap().slice(0, 5),
        "head of a partitioned answer"
    );

    let few = df.groupby(&["name"]).unwrap().agg(&specs(&aggs)).unwrap();
    let (parts, _) = few.compute_partitions().unwrap();
    assert_eq!(parts.len(), few.npartitions());
    let nonempty: Vec<usize> = (0..parts.len())
        .filter(|&i| parts[i].num_rows() > 0)
        .collect();
    assert_eq!(
        nonempty,
        vec![parts.len() - 1],
        "a small answer is gathered into the last partition"
    );
    check_groupby(
        &parts[parts.len() - 1],
        &t,
        &["name"],
        &aggs,
        false,
        "few groups",
    );
}
