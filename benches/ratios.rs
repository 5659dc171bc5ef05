//! The ratios the Benchmarks targets name, each measured with its runs
//! interleaved (see `Paired`): on a shared machine, criterion's runs of
//! one bench after another can differ by half just by when they ran.
//!
//! Prints one line per figure: `ALG NAME MEDIAN MIN MAX` over the rounds.
//! `cargo bench --bench ratios` (`QUICK=1` for fewer, shorter rounds);
//! `scripts/bench-report` reads its output.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use common::{ALGORITHMS, Case, Fixture, Paired, TWO_THREADS, paired_settings};

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (count, round) = paired_settings();
    for alg in ALGORITHMS {
        let fx = Fixture::new(&rt, alg);
        let runs: Vec<(Case, usize)> = Case::ALL
            .iter()
            .map(|&c| (c, 1))
            .chain(TWO_THREADS.map(|c| (c, 2)))
            .collect();
        let closures: Vec<Box<dyn Fn(u64) -> Duration + Sync>> = runs
            .iter()
            .map(|&(case, threads)| {
                let fx = &fx;
                Box::new(move |n| fx.time(case, threads, n)) as Box<dyn Fn(u64) -> Duration + Sync>
            })
            .collect();
        let refs: Vec<&(dyn Fn(u64) -> Duration + Sync)> = closures.iter().map(|b| &**b).collect();
        let p = Paired::run(&refs, count, round);
        let at =
            |case: Case, threads: usize| runs.iter().position(|&r| r == (case, threads)).unwrap();
        let print = |name: &str, (median, lo, hi): (f64, f64, f64)| {
            println!("{alg} {name} {median:.4} {lo:.4} {hi:.4}");
        };
        for (i, &(case, threads)) in runs.iter().enumerate() {
            let m = p.median(i) / 1000.0;
            print(&format!("{}-x{threads}-us", case.name()), (m, m, m));
        }
        print("cold/floor", p.ratio(at(Case::Cold, 1), at(Case::Floor, 1)));
        print(
            "cold/jsonwebtoken",
            p.ratio(at(Case::Cold, 1), at(Case::Jsonwebtoken, 1)),
        );
        print(
            "cold/cached",
            p.ratio(at(Case::Cold, 1), at(Case::Cached, 1)),
        );
        let us = |(a, b, c): (f64, f64, f64)| (a / 1000.0, b / 1000.0, c / 1000.0);
        print(
            "hit-us",
            us(p.difference(at(Case::Cached, 1), at(Case::Open, 1))),
        );
        print(
            "hit-pool-us",
            us(p.difference(at(Case::CachedPool, 1), at(Case::Open, 1))),
        );
        for case in TWO_THREADS {
            print(
                &format!("{}-scaling", case.name()),
                p.ratio(at(case, 1), at(case, 2)),
            );
        }
    }
}
