//! [`Readiness`]: a readiness probe's answer, from the key health of every
//! configured issuer.
//!
//! Readiness is not liveness. A process whose issuer is unreachable is
//! alive and keeps its keys through the stale-if-error window; it is not
//! ready only once some configured issuer has no usable key set left, as
//! its tokens then get 503. A load balancer stops sending it requests; a
//! restart would not help, so liveness should stay a plain `/healthz`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::jwks::KeyHealth;
use crate::metadata::{document_service, refuse_unless_get};

/// A tower service for a readiness probe (Kubernetes' `readinessProbe`),
/// from [`BearerAuthLayer::readiness`](crate::BearerAuthLayer::readiness).
///
/// `GET` (or `HEAD`) answers 200 while every configured issuer (and the
/// shared key set of each template that has one) has a usable key set,
/// else 503; both with a JSON body that says, for each, whether it is
/// ready, how many keys it has, and why not:
///
/// ```json
/// {"ready":false,"issuers":[{"issuer":"https://idp.example.com","ready":false,
///  "keys":0,"consecutive_failures":3,"reason":"no key set fetched yet"}]}
/// ```
///
/// The tenants a template makes on first use are left out: one tenant's
/// outage is not the process's. Keys come by discovery on first use
/// unless prefetched, so call
/// [`prefetch_keys`](crate::BearerAuthLayer::prefetch_keys) at start-up;
/// until then a probe says "no key set fetched yet". Mount it on a route
/// the layer does not cover.
#[derive(Clone)]
pub struct Readiness {
    health: Arc<HealthNow>,
}

/// The time now, and the key health of each configured issuer.
pub(crate) type HealthNow = dyn Fn() -> (SystemTime, Vec<(String, KeyHealth)>) + Send + Sync;

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").finish_non_exhaustive()
    }
}

impl Readiness {
    pub(crate) fn new(health: Arc<HealthNow>) -> Self {
        Self { health }
    }

    /// Whether every configured issuer has a usable key set now, and the
    /// JSON the probe answers with.
    pub fn check(&self) -> (bool, Value) {
        let (now, health) = (self.health)();
        let issuers: Vec<Value> = health
            .iter()
            .map(|(issuer, health)| issuer_state(issuer, health, now))
            .collect();
        let ready = issuers.iter().all(|i| i["ready"] == true);
        (ready, json!({ "ready": ready, "issuers": issuers }))
    }
}

fn issuer_state(issuer: &str, health: &KeyHealth, now: SystemTime) -> Value {
    let ready = health.is_ready(now);
    let mut state = json!({
        "issuer": issuer,
        "ready": ready,
        "keys": health.key_count,
        "consecutive_failures": health.consecutive_failures,
    });
    if let Some(t) = health
        .last_success
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
    {
        state["last_success"] = json!(t.as_secs());
    }
    if !ready {
        // Fixed words: the probe's answer may be seen further than logs.
        let reason = if health.last_success.is_none() && health.last_error.is_none() {
            "no key set fetched yet"
        } else if health.last_success.is_none() {
            "the key set could not be fetched"
        } else if health.key_count == 0 {
            "the key set holds no usable key"
        } else {
            "the key set expired and no newer one was fetched"
        };
        state["reason"] = json!(reason);
    }
    state
}

impl Readiness {
    fn answer(&self, method: &Method) -> Response<String> {
        if let Some(refused) = refuse_unless_get(method) {
            return refused;
        }
        let (is_ready, body) = self.check();
        let mut res = Response::new(body.to_string());
        if !is_ready {
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

document_service!(Readiness);
