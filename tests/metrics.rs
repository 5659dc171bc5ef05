//! The metrics (feature `metrics`) against real recorders: `metrics-util`'s
//! debugging recorder, where every counter must move exactly as a scripted
//! sequence says and no other, and `metrics-exporter-prometheus`, whose
//! text the Prometheus project's own parser (Python's `prometheus_client`)
//! reads. Each validator is built under a local recorder of its own, so
//! the tests share no global state.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower_bearer::testing::{DpopKey, EndpointFault, TestIssuer};
use tower_bearer::{
    Algorithm, BearerAuthLayer, ClientId, ClientSecret, Clock as _, Dpop, RequireScopesLayer,
    ScopePolicy, TrustedIssuer,
};

/// A series as Prometheus names it: `name{k="v",…}`, labels sorted.
fn series(key: &metrics::Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
        .collect();
    labels.sort();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

/// The debugging recorder's readings, step by step: each snapshot holds
/// what counters and histograms recorded since the one before.
struct Meter {
    snapshotter: Snapshotter,
}

/// One snapshot.
#[derive(Default)]
struct Readings {
    /// Every counter series, by how much it moved.
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
    /// Samples recorded, per histogram series.
    histograms: BTreeMap<String, usize>,
}

impl Meter {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
        }
    }

    fn read(&mut self) -> Readings {
        let mut readings = Readings::default();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let name = series(key.key());
            match value {
                DebugValue::Counter(n) => {
                    readings.counters.insert(name, n);
                }
                DebugValue::Gauge(v) => {
                    readings.gauges.insert(name, v.into_inner());
                }
                DebugValue::Histogram(samples) => {
                    readings.histograms.insert(name, samples.len());
                }
            }
        }
        readings
    }

    /// Asserts that, since the last step, exactly the counters of `moved`
    /// moved, each by its amount, and no other.
    fn step(&mut self, what: &str, moved: &[(&str, u64)]) -> Readings {
        let readings = self.read();
        let changed: BTreeMap<String, u64> = readings
            .counters
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        let expected: BTreeMap<String, u64> =
            moved.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        assert_eq!(changed, expected, "{what}: counters moved otherwise");
        readings
    }
}

fn requests(outcome: &str, reason: &str, issuer: &str) -> String {
    format!(
        "tower_bearer_requests_total{{issuer=\"{issuer}\",outcome=\"{outcome}\",reason=\"{reason}\"}}"
    )
}

fn fetches(issuer: &str, result: &str) -> String {
    format!("tower_bearer_key_fetches_total{{issuer=\"{issuer}\",result=\"{result}\"}}")
}

const HITS: &str = "tower_bearer_token_cache_hits_total";
const MISSES: &str = "tower_bearer_token_cache_misses_total";

fn get(path: &str, token: Option<&str>) -> http::Request<Body> {
    let mut req = http::Request::get(path).header(http::header::HOST, "api.test");
    if let Some(token) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Body::empty()).unwrap()
}

fn app(auth: &BearerAuthLayer) -> axum::Router {
    let ok = axum::routing::get(|| async { "ok" });
    axum::Router::new()
        .route(
            "/admin",
            ok.clone().route_layer(auth.require_all(["admin"])),
        )
        // A route layer made without the validator.
        .route(
            "/standalone",
            ok.clone()
                .route_layer(RequireScopesLayer::policy(ScopePolicy::all(["admin"]))),
        )
        .route("/me", ok)
        .layer(auth.clone())
}

#[tokio::test]
async fn a_scripted_sequence_moves_each_counter_exactly_as_expected() {
    let (clock, idp) = common::issuer_on_a_manual_clock().await;
    idp.set_jwks_etag(true);
    let recorder = DebuggingRecorder::new();
    let auth = metrics::with_local_recorder(&recorder, || common::validator_on(&idp, &clock));
    let mut meter = Meter::new(&recorder);
    let app = app(&auth);
    let iss = idp.issuer().to_owned();
    let accepted = requests("accepted", "ok", &iss);

    // Every series exists, at zero, before the first request.
    let start = meter.read();
    assert!(start.counters.contains_key(&accepted));
    assert!(
        start
            .counters
            .contains_key(&requests("refused", "missing_token", ""))
    );
    assert!(start.counters.values().all(|n| *n == 0));

    let valid = idp.token().scope("read").sign();
    assert_eq!(
        common::send(&app, get("/me", Some(&valid))).await.status,
        200
    );
    let r = meter.step(
        "a valid token, the first",
        &[(&accepted, 1), (MISSES, 1), (&fetches(&iss, "updated"), 1)],
    );
    let path = |p: &str| format!("tower_bearer_validation_duration_seconds{{path=\"{p}\"}}");
    assert_eq!(r.histograms.get(&path("verified")), Some(&1));
    let keys = r.gauges[&format!("tower_bearer_keys{{issuer=\"{iss}\"}}")];
    assert!(keys >= 1.0, "{keys}");
    let now = clock.now().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(
        r.gauges[&format!("tower_bearer_keys_last_success_timestamp_seconds{{issuer=\"{iss}\"}}")],
        now.as_secs_f64()
    );
    assert!(
        r.gauges[&format!("tower_bearer_keys_expires_timestamp_seconds{{issuer=\"{iss}\"}}")]
            > now.as_secs_f64()
    );

    // Hits are timed one in 16 (per thread): of 32 in a row, exactly two.
    for _ in 0..32 {
        let status = common::send(&app, get("/me", Some(&valid))).await.status;
        assert_eq!(status, 200);
    }
    let r = meter.step("the same token: cache hits", &[(&accepted, 32), (HITS, 32)]);
    assert_eq!(r.histograms.get(&path("cached")), Some(&2));
    assert_eq!(r.histograms.get(&path("verified")), Some(&0));

    let expired = idp.token().expires_in(-120).sign();
    assert_eq!(
        common::send(&app, get("/me", Some(&expired))).await.status,
        401
    );
    meter.step(
        "an expired token",
        &[(&requests("refused", "expired", &iss), 1), (MISSES, 1)],
    );

    let (head, sig) = valid.rsplit_once('.').unwrap();
    let forged = format!(
        "{head}.{}",
        common::b64(vec![7u8; common::unb64(sig).len()])
    );
    assert_eq!(
        common::send(&app, get("/me", Some(&forged))).await.status,
        401
    );
    meter.step(
        "a forged signature",
        &[
            (&requests("refused", "bad_signature", &iss), 1),
            (MISSES, 1),
        ],
    );

    assert_eq!(common::send(&app, get("/me", None)).await.status, 401);
    meter.step(
        "no token",
        &[(&requests("refused", "missing_token", ""), 1)],
    );

    // Accepted by the layer, refused by the route: counted once, as the
    // route's refusal.
    assert_eq!(
        common::send(&app, get("/admin", Some(&valid))).await.status,
        403
    );
    meter.step(
        "a route's refusal",
        &[
            (&requests("refused", "insufficient_scope", &iss), 1),
            (HITS, 1),
        ],
    );
    assert_eq!(
        common::send(&app, get("/standalone", Some(&valid)))
            .await
            .status,
        403
    );
    meter.step(
        "a standalone route layer's refusal",
        &[
            (&requests("refused", "insufficient_scope", &iss), 1),
            (HITS, 1),
        ],
    );

    // A rotation: the new key is fetched on its first token; a 304 after
    // the set's lifetime changes nothing.
    clock.advance(Duration::from_secs(31));
    idp.rotate(Algorithm::ES256);
    let rotated = idp.token().sign();
    assert_eq!(
        common::send(&app, get("/me", Some(&rotated))).await.status,
        200
    );
    meter.step(
        "a rotation",
        &[(&accepted, 1), (MISSES, 1), (&fetches(&iss, "updated"), 1)],
    );

    // A fetch failure: an unknown kid after the cooldown, while the JWKS
    // endpoint answers 500.
    clock.advance(Duration::from_secs(31));
    idp.set_jwks_fault(EndpointFault::Status(500));
    let unknown = idp.token().header("kid", "not-published").sign();
    assert_eq!(
        common::send(&app, get("/me", Some(&unknown))).await.status,
        401
    );
    meter.step(
        "a fetch failure",
        &[
            (&requests("refused", "unknown_key", &iss), 1),
            (MISSES, 1),
            (&fetches(&iss, "error"), 1),
        ],
    );
    idp.set_jwks_fault(EndpointFault::None);
    clock.advance(Duration::from_secs(31));
    assert_eq!(
        common::send(&app, get("/me", Some(&unknown))).await.status,
        401
    );
    meter.step(
        "the set again, unchanged",
        &[
            (&requests("refused", "unknown_key", &iss), 1),
            (MISSES, 1),
            (&fetches(&iss, "not_modified"), 1),
        ],
    );
}

#[tokio::test]
async fn introspection_calls_and_dpop_replays_are_counted() {
    let (clock, idp) = common::issuer_on_a_manual_clock().await;
    let recorder = DebuggingRecorder::new();
    let (id, secret) = TestIssuer::INTROSPECTION_CLIENT;
    let auth = metrics::with_local_recorder(&recorder, || {
        BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience(idp.audience())
            .clock(clock.clone())
            .introspection(ClientId::new(id), ClientSecret::new(secret))
            .dpop(Dpop::allowed())
            .build()
            .unwrap()
    });
    let mut meter = Meter::new(&recorder);
    let app = axum::Router::new()
        .route("/me", axum::routing::get(|| async { "ok" }))
        .layer(auth.clone());
    let iss = idp.issuer().to_owned();

    let opaque = idp.token().opaque();
    assert_eq!(
        common::send(&app, get("/me", Some(&opaque))).await.status,
        200
    );
    let r = meter.step(
        "an opaque token",
        &[
            (&requests("accepted", "ok", &iss), 1),
            (MISSES, 1),
            (
                "tower_bearer_introspection_calls_total{result=\"active\"}",
                1,
            ),
        ],
    );
    assert_eq!(
        r.histograms
            .get("tower_bearer_validation_duration_seconds{path=\"introspected\"}"),
        Some(&1)
    );
    assert_eq!(
        r.histograms
            .get("tower_bearer_introspection_duration_seconds"),
        Some(&1)
    );

    let revoked = idp.token().opaque();
    idp.revoke(&revoked);
    assert_eq!(
        common::send(&app, get("/me", Some(&revoked))).await.status,
        401
    );
    meter.step(
        "an inactive token",
        &[
            (&requests("refused", "inactive", &iss), 1),
            (MISSES, 1),
            (
                "tower_bearer_introspection_calls_total{result=\"refused\"}",
                1,
            ),
        ],
    );

    // A DPoP proof used twice.
    let key = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = idp.token().bound_to(&key).sign();
    let now = clock.now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let iat = i64::try_from(now.as_secs()).unwrap();
    let proof = key
        .proof("GET", "https://api.test/me", &token)
        .issued_at(iat)
        .sign();
    let dpop = |proof: &str| {
        http::Request::get("/me")
            .header(http::header::HOST, "api.test")
            .header(http::header::AUTHORIZATION, format!("DPoP {token}"))
            .header("dpop", proof)
            .body(Body::empty())
            .unwrap()
    };
    let first = common::send(&app, dpop(&proof)).await;
    assert_eq!(first.status, 200, "{:?} {}", first.challenge, first.body);
    assert_eq!(common::send(&app, dpop(&proof)).await.status, 401);
    meter.step(
        "a DPoP proof replayed",
        &[
            (&requests("accepted", "ok", &iss), 1),
            (&requests("refused", "dpop", &iss), 1),
            (MISSES, 1),
            (HITS, 1),
            (&fetches(&iss, "updated"), 1),
            ("tower_bearer_dpop_replays_total", 1),
        ],
    );
}

#[tokio::test]
async fn metrics_off_records_nothing() {
    let idp = TestIssuer::start().await.unwrap();
    let recorder = DebuggingRecorder::new();
    let auth = metrics::with_local_recorder(&recorder, || {
        BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience(idp.audience())
            .metrics(false)
            .build()
            .unwrap()
    });
    let app = app(&auth);
    assert_eq!(
        common::send(&app, get("/me", Some(&idp.token().sign())))
            .await
            .status,
        200
    );
    assert!(recorder.snapshotter().snapshot().into_vec().is_empty());
}

#[tokio::test]
async fn series_stay_bounded_by_the_configuration_whatever_the_tokens_say() {
    let idp = TestIssuer::start().await.unwrap();
    let recorder = DebuggingRecorder::new();
    let template = format!("{}/realms/{{tenant}}", idp.issuer());
    let auth = metrics::with_local_recorder(&recorder, || {
        BearerAuthLayer::builder()
            .audience(idp.audience())
            .trusted_issuer(TrustedIssuer::new(idp.issuer()))
            .trusted_issuer(TrustedIssuer::new(&template))
            .build()
            .unwrap()
    });
    let app = app(&auth);
    let count = || recorder.snapshotter().snapshot().into_vec().len();
    assert_eq!(
        common::send(&app, get("/me", Some(&idp.token().sign())))
            .await
            .status,
        200
    );
    let configured = count();

    for i in 0..1000 {
        let random = format!("https://{:x}.example/{i}", i * 7919);
        let token = idp.token().claim("iss", random).sign();
        assert_eq!(
            common::send(&app, get("/me", Some(&token))).await.status,
            401
        );
        let tenant = idp.tenant_issuer(&format!("t{:x}", i * 104_729));
        let token = idp.token().claim("iss", tenant).sign();
        let status = common::send(&app, get("/me", Some(&token))).await.status;
        assert!(status == 401 || status == 503, "{status}");
    }
    assert_eq!(
        count(),
        configured,
        "2000 requests naming 1000 issuers and 1000 tenants added no series"
    );
    let names: Vec<String> = recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, ..)| series(k.key()))
        .filter(|s| s.contains("/realms/") || s.contains(".example/"))
        .collect();
    assert!(
        names.iter().all(|s| s.contains("/realms/{tenant}")),
        "only the template names tenants' issuer: {names:?}"
    );
}

/// The Prometheus text of a validator that saw a few requests, read by
/// `prometheus_client`'s parser (tests/python/prometheus_text.py).
#[tokio::test]
async fn the_prometheus_text_parses_with_the_prometheus_client_parser() {
    let Some(python) = common::python() else {
        return;
    };
    let idp = TestIssuer::start().await.unwrap();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.000_1, 0.001, 0.01, 0.1, 1.0])
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    let auth = metrics::with_local_recorder(&recorder, || {
        BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience(idp.audience())
            .build()
            .unwrap()
    });
    let app = app(&auth);
    let token = idp.token().sign();
    for _ in 0..3 {
        assert_eq!(
            common::send(&app, get("/me", Some(&token))).await.status,
            200
        );
    }
    assert_eq!(common::send(&app, get("/me", None)).await.status, 401);
    let text = handle.render();

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/prometheus_text.py"
    );
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let family = |name: &str| {
        families
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no family {name} in {families}"))
            .clone()
    };
    let requests = family("tower_bearer_requests");
    assert_eq!(requests["type"], "counter");
    let sample = |labels: serde_json::Value| {
        requests["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "tower_bearer_requests_total" && s["labels"] == labels)
            .map(|s| s["value"].as_f64().unwrap())
    };
    let iss = idp.issuer();
    let accepted = serde_json::json!({"issuer": iss, "outcome": "accepted", "reason": "ok"});
    assert_eq!(sample(accepted), Some(3.0));
    let missing =
        serde_json::json!({"issuer": "", "outcome": "refused", "reason": "missing_token"});
    assert_eq!(sample(missing), Some(1.0));
    let duration = family("tower_bearer_validation_duration_seconds");
    assert_eq!(duration["type"], "histogram");
    let count = duration["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["name"] == "tower_bearer_validation_duration_seconds_count"
                && s["labels"]["path"] == "verified"
        })
        .map(|s| s["value"].as_f64().unwrap());
    assert_eq!(count, Some(1.0));
    assert_eq!(family("tower_bearer_keys")["type"], "gauge");
}
