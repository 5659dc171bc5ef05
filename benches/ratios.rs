//! The ratios the Benchmarks targets name, each measured with its runs
//! interleaved (see `Paired`): on a shared machine, criterion's runs of
//! one bench after another can differ by half just by when they ran.
//!
//! Prints one line per figure: `ALG NAME MEDIAN MIN MAX BEST` (see below).
//! `cargo bench --bench ratios` (`QUICK=1` for fewer, shorter rounds);
//! `scripts/bench-report` reads its output.

#[path = "common/mod.rs"]
mod common;

use common::{ALGORITHMS, Case, Fixture, Paired, TWO_THREADS, paired_settings};

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (count, round) = paired_settings();
    for alg in ALGORITHMS {
        let fx = Fixture::new(&rt, alg);
        // DPoP: an ES256 proof with the RS256 token, as the issue asks.
        let dpop: &[Case] = if alg == tower_bearer::Algorithm::RS256 {
            &[Case::ProofFloor, Case::DpopCold, Case::DpopCached]
        } else {
            &[]
        };
        let runs: Vec<(Case, usize)> = Case::ALL
            .iter()
            .chain(&[
                Case::HostileHeader,
                Case::PlainHeader,
                Case::UnknownKid,
                Case::ColdTenIssuers,
                Case::CachedTenIssuers,
                Case::ColdRoles,
                Case::ColdMetrics,
                Case::CachedMetrics,
                Case::ReadMany,
                Case::ReadOne,
            ])
            .chain(dpop)
            .map(|&c| (c, 1))
            .chain(TWO_THREADS.map(|c| (c, 2)))
            .collect();
        let timers: Vec<_> = runs
            .iter()
            .map(|&(case, threads)| {
                let fx = &fx;
                move |n| fx.time(case, threads, n)
            })
            .collect();
        let p = Paired::run(&timers, count, round);
        let at = |run: (Case, usize)| runs.iter().position(|&r| r == run).unwrap();
        // `ALG NAME MEDIAN MIN MAX BEST`: the median, smallest and largest
        // per-round figure, and the figure from each side's fastest round.
        let print = |name: &str, (median, lo, hi): (f64, f64, f64), best: f64| {
            println!("{alg} {name} {median:.4} {lo:.4} {hi:.4} {best:.4}");
        };
        for (i, &(case, threads)) in runs.iter().enumerate() {
            let m = p.median(i) / 1000.0;
            print(
                &format!("{}-x{threads}-us", case.name()),
                (m, m, m),
                p.best(i) / 1000.0,
            );
        }
        let ratio = |name: &str, a: (Case, usize), b: (Case, usize)| {
            print(name, p.ratio(at(a), at(b)), p.best_ratio(at(a), at(b)));
        };
        ratio("cold/floor", (Case::Cold, 1), (Case::Floor, 1));
        ratio(
            "cold/jsonwebtoken",
            (Case::Cold, 1),
            (Case::Jsonwebtoken, 1),
        );
        ratio("cold/cached", (Case::Cold, 1), (Case::Cached, 1));
        ratio("unknown-kid/cold", (Case::UnknownKid, 1), (Case::Cold, 1));
        ratio(
            "cold-10-issuers/cold",
            (Case::ColdTenIssuers, 1),
            (Case::Cold, 1),
        );
        ratio("cold-roles/cold", (Case::ColdRoles, 1), (Case::Cold, 1));
        ratio("cold-metrics/cold", (Case::ColdMetrics, 1), (Case::Cold, 1));
        ratio(
            "cached-metrics/cached",
            (Case::CachedMetrics, 1),
            (Case::Cached, 1),
        );
        ratio(
            "hostile-header/plain",
            (Case::HostileHeader, 1),
            (Case::PlainHeader, 1),
        );
        if !dpop.is_empty() {
            ratio("dpop-cold/cold", (Case::DpopCold, 1), (Case::Cold, 1));
            ratio(
                "dpop-cached/cached",
                (Case::DpopCached, 1),
                (Case::Cached, 1),
            );
            // The proof check alone: what DPoP adds to a cache hit, against
            // the floor of one ES256 proof.
            let (a, b, c) = (
                at((Case::DpopCached, 1)),
                at((Case::Cached, 1)),
                at((Case::ProofFloor, 1)),
            );
            print(
                "proof/proof-floor",
                p.excess_ratio(a, b, c),
                (p.best(a) - p.best(b)) / p.best(c),
            );
        }
        for case in TWO_THREADS {
            ratio(&format!("{}-scaling", case.name()), (case, 1), (case, 2));
        }
        // What many tokens add to a hit, against what they add to the
        // least a hit reads (its token's stored copy): 1 is a hit with
        // many tokens that pays for nothing but the memory its tokens are in.
        let (many, one) = (at((Case::CachedMany, 1)), at((Case::Cached, 1)));
        let (read_many, read_one) = (at((Case::ReadMany, 1)), at((Case::ReadOne, 1)));
        let mut added: Vec<f64> = (0..p.rounds[many].len())
            .map(|r| {
                (p.rounds[many][r] - p.rounds[one][r])
                    / (p.rounds[read_many][r] - p.rounds[read_one][r])
            })
            .collect();
        added.sort_by(f64::total_cmp);
        print(
            "hit-10k-added/read-added",
            (added[added.len() / 2], added[0], added[added.len() - 1]),
            (p.best(many) - p.best(one)) / (p.best(read_many) - p.best(read_one)),
        );
        let us = |(a, b, c): (f64, f64, f64)| (a / 1000.0, b / 1000.0, c / 1000.0);
        for (name, case) in [
            ("hit-us", Case::Cached),
            ("hit-10k-us", Case::CachedMany),
            ("hit-10-issuers-us", Case::CachedTenIssuers),
        ] {
            let (a, b) = (at((case, 1)), at((Case::Open, 1)));
            print(
                name,
                us(p.difference(a, b)),
                (p.best(a) - p.best(b)) / 1000.0,
            );
        }
    }
}
