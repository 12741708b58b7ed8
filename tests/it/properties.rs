//! Property: a groupby's answer does not depend on how the data is cut and run (block
//! size from 1 byte to 1 MiB, 1 to 5 files, 1 to 4 threads, sync or parallel
//! scheduling, `split_every` 2 to 8), and equals the naive reference.

use outcore::scheduler::Mode;
use proptest::prelude::*;

use crate::common::*;

/// Block sizes spread over 1 byte ..= 1 MiB on a log scale.
fn blocksize() -> impl Strategy<Value = u64> {
    (0u32..=20, any::<u64>()).prop_map(|(e, jitter)| {
        let base = 1u64 << e;
        if e == 20 {
            base
        } else {
            base + jitter % base
        }
    })
}

/// Cut points `0 = c0 <= c1 <= ... <= cn = rows` for `nfiles` files (some may be
/// header-only).
fn cuts(rows: usize, nfiles: usize, picks: &[usize]) -> Vec<usize> {
    let mut inner: Vec<usize> = picks[..nfiles - 1].iter().map(|p| p % (rows + 1)).collect();
    inner.sort();
    let mut c = vec![0];
    c.extend(inner);
    c.push(rows);
    c
}

fn aggs() -> Vec<Agg> {
    let mut out: Vec<Agg> = vec![("size", None)];
    for f in [
        "sum", "count", "mean", "min", "max", "std", "first", "last", "nunique",
    ] {
        out.push((f, Some("x")));
        out.push((f, Some("v")));
    }
    for f in ["first", "last", "nunique"] {
        out.push((f, Some("s")));
    }
    out
}

proptest! {
    // No failure files: a failing case prints its input; tests write only under tests/it.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(24)
    })]

    #[test]
    fn groupby_does_not_depend_on_partitioning_or_scheduling(
        seed in any::<u64>(),
        rows in 1usize..200,
        nfiles in 1usize..=5,
        picks in proptest::collection::vec(any::<usize>(), 4),
        blocksize in blocksize(),
        threads in 1usize..=4,
        sync in any::<bool>(),
        split_every in 2usize..=8,
        nulls in prop_oneof![Just(0.0), Just(0.15)],
        keep_null_keys in any::<bool>(),
    ) {
        let t = gen_table(seed, &GenOpts::new(rows).nulls(nulls, nulls));
        let dir = tempfile::tempdir().unwrap();
        let c = cuts(rows, nfiles, &picks);
        t.write_cut(dir.path(), &c);
        let mode = if sync { Mode::Sync } else { Mode::Parallel };
        let s = session_split(threads, mode, blocksize, split_every);
        let df = load_gen(&s, dir.path());
        let aggs = aggs();
        let ctx = format!(
            "rows {rows}, cuts {c:?}, blocksize {blocksize}, threads {threads}, {mode:?}, \
             split_every {split_every}, nulls {nulls}, keep_null_keys {keep_null_keys}"
        );
        for key in ["name", "id"] {
            let mut g = df.groupby(&[key]).unwrap();
            if keep_null_keys {
                g = g.keep_null_keys();
            }
            let out = g.agg(&specs(&aggs)).unwrap().compute().unwrap();
            check_groupby(&out, &t, &[key], &aggs, keep_null_keys, &ctx);
        }
    }
}
