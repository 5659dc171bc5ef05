//! The `metrics` feature: every metric of the README's "Operating it",
//! through the `metrics` facade, so that any exporter works.
//!
//! Every handle, labels included, is resolved once, when `build()` runs,
//! from the recorder in effect then (the global one, or a local one set
//! around `build()`): a request only increments what is already there.
//! The labels come from the configuration alone, so the number of series
//! is bounded by it, whatever the tokens say.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram, Unit};

use super::{FetchResult, KeyReading, Outcome, Path, Reason};

pub(crate) const REQUESTS: &str = "tower_bearer_requests_total";
pub(crate) const VALIDATION_DURATION: &str = "tower_bearer_validation_duration_seconds";
pub(crate) const CACHE_HITS: &str = "tower_bearer_token_cache_hits_total";
pub(crate) const CACHE_MISSES: &str = "tower_bearer_token_cache_misses_total";
pub(crate) const KEY_FETCHES: &str = "tower_bearer_key_fetches_total";
pub(crate) const KEYS: &str = "tower_bearer_keys";
pub(crate) const KEYS_LAST_SUCCESS: &str = "tower_bearer_keys_last_success_timestamp_seconds";
pub(crate) const KEYS_EXPIRES: &str = "tower_bearer_keys_expires_timestamp_seconds";
pub(crate) const INTROSPECTION_CALLS: &str = "tower_bearer_introspection_calls_total";
pub(crate) const INTROSPECTION_DURATION: &str = "tower_bearer_introspection_duration_seconds";
pub(crate) const DPOP_REPLAYS: &str = "tower_bearer_dpop_replays_total";

/// The metrics of one validator.
pub(crate) struct Metrics {
    /// By issuer index: 0 for requests no configured issuer judged, then
    /// each trusted issuer (or template) in the order configured.
    issuers: Box<[Arc<IssuerMetrics>]>,
    durations: [Histogram; 3],
    pub(crate) cache_hits: Counter,
    pub(crate) cache_misses: Counter,
    pub(crate) dpop_replays: Counter,
}

/// `tower_bearer_requests_total` of one issuer label, by reason.
pub(crate) struct IssuerMetrics {
    requests: Box<[Counter]>,
}

impl IssuerMetrics {
    pub(crate) fn count(&self, reason: Reason) {
        if let Some(c) = self.requests.get(reason as usize) {
            c.increment(1);
        }
    }
}

/// The key metrics of one issuer label.
pub(crate) struct KeyMetrics {
    fetches: [Counter; 3],
    keys: Gauge,
    last_success: Gauge,
    expires: Gauge,
}

impl KeyMetrics {
    /// Counts one fetch and sets the gauges from the state after it.
    pub(crate) fn fetched(&self, result: FetchResult, reading: KeyReading) {
        self.fetches[result as usize].increment(1);
        self.set(reading);
    }

    /// Sets the gauges from `reading`.
    pub(crate) fn set(&self, reading: KeyReading) {
        self.keys.set(reading.keys as f64);
        if let Some(t) = reading.last_success {
            self.last_success.set(unix(t));
        }
        if let Some(t) = reading.expires_at {
            self.expires.set(unix(t));
        }
    }

    /// The same counters without the gauges: for the stores of a
    /// template's tenants, which share the template's label, where one
    /// tenant's key count would overwrite another's.
    pub(crate) fn counters_only(&self) -> Arc<Self> {
        Arc::new(Self {
            fetches: self.fetches.clone(),
            keys: Gauge::noop(),
            last_success: Gauge::noop(),
            expires: Gauge::noop(),
        })
    }
}

/// The introspection metrics.
pub(crate) struct IntrospectionMetrics {
    /// `active`, `refused`, `error`.
    calls: [Counter; 3],
    duration: Histogram,
}

impl IntrospectionMetrics {
    pub(crate) fn new() -> Self {
        Self {
            calls: ["active", "refused", "error"]
                .map(|result| metrics::counter!(INTROSPECTION_CALLS, "result" => result)),
            duration: metrics::histogram!(INTROSPECTION_DURATION),
        }
    }

    /// One call that took `took`: an answer that accepts the token
    /// (`Some(true)`) or refuses it (`Some(false)`: inactive, or failing
    /// a check), or none (`None`: no answer, or not one at all).
    pub(crate) fn called(&self, active: Option<bool>, took: Duration) {
        let i = match active {
            Some(true) => 0,
            Some(false) => 1,
            None => 2,
        };
        self.calls[i].increment(1);
        self.duration.record(took.as_secs_f64());
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// Resolves every handle from the recorder in effect; `labels` holds
    /// the `issuer` label of each issuer index (`""` at 0).
    pub(crate) fn new(labels: &[Box<str>]) -> Self {
        describe();
        let issuers = labels
            .iter()
            .map(|issuer| {
                let requests = Reason::ALL
                    .iter()
                    .map(|r| {
                        metrics::counter!(
                            REQUESTS,
                            "outcome" => r.outcome().as_str(),
                            "reason" => r.as_str(),
                            "issuer" => issuer.to_string(),
                        )
                    })
                    .collect();
                Arc::new(IssuerMetrics { requests })
            })
            .collect();
        Self {
            issuers,
            durations: Path::ALL
                .map(|p| metrics::histogram!(VALIDATION_DURATION, "path" => p.as_str())),
            cache_hits: metrics::counter!(CACHE_HITS),
            cache_misses: metrics::counter!(CACHE_MISSES),
            dpop_replays: metrics::counter!(DPOP_REPLAYS),
        }
    }

    /// The key metrics of issuer label `issuer`.
    pub(crate) fn keys(issuer: &str) -> Arc<KeyMetrics> {
        let issuer = issuer.to_owned();
        Arc::new(KeyMetrics {
            fetches: FetchResult::ALL.map(|result| {
                metrics::counter!(KEY_FETCHES, "issuer" => issuer.clone(), "result" => result.as_str())
            }),
            keys: metrics::gauge!(KEYS, "issuer" => issuer.clone()),
            last_success: metrics::gauge!(KEYS_LAST_SUCCESS, "issuer" => issuer.clone()),
            expires: metrics::gauge!(KEYS_EXPIRES, "issuer" => issuer),
        })
    }

    /// The requests counters of issuer index `issuer` (0 when out of
    /// range).
    pub(crate) fn issuer(&self, issuer: u16) -> &Arc<IssuerMetrics> {
        let i = usize::from(issuer);
        &self.issuers[if i < self.issuers.len() { i } else { 0 }]
    }

    /// One validation's end: its reason under its issuer, and, when it
    /// took a path, how long it took from `started`. An accepted token is
    /// counted by the caller once the route has had its say.
    pub(crate) fn observe(
        &self,
        path: Option<Path>,
        issuer: u16,
        reason: Reason,
        started: Option<Instant>,
    ) {
        if let (Some(path), Some(started)) = (path, started) {
            self.durations[path as usize].record(started.elapsed().as_secs_f64());
        }
        if reason.outcome() != Outcome::Accepted {
            self.issuer(issuer).count(reason);
        }
    }
}

/// The descriptions and units, for exporters that show them.
fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests the bearer layer decided, by outcome, reason and configured issuer"
    );
    metrics::describe_histogram!(
        VALIDATION_DURATION,
        Unit::Seconds,
        "Time to validate a token, by path: cached, verified or introspected"
    );
    metrics::describe_counter!(CACHE_HITS, Unit::Count, "Verified-token cache hits");
    metrics::describe_counter!(CACHE_MISSES, Unit::Count, "Verified-token cache misses");
    metrics::describe_counter!(
        KEY_FETCHES,
        Unit::Count,
        "Key set and discovery fetches, by issuer and result"
    );
    metrics::describe_gauge!(KEYS, Unit::Count, "Usable keys in the issuer's current set");
    metrics::describe_gauge!(
        KEYS_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful key fetch (a 304 counts)"
    );
    metrics::describe_gauge!(
        KEYS_EXPIRES,
        Unit::Seconds,
        "Unix time at which the current key set stops being fresh"
    );
    metrics::describe_counter!(
        INTROSPECTION_CALLS,
        Unit::Count,
        "Calls to the introspection endpoint, by result: active, refused, error"
    );
    metrics::describe_histogram!(
        INTROSPECTION_DURATION,
        Unit::Seconds,
        "Time an introspection call took"
    );
    metrics::describe_counter!(DPOP_REPLAYS, Unit::Count, "DPoP proofs refused as replays");
}
