//! The poll client (RFC 8936): asks the transmitter for SETs, applies
//! them, and acknowledges them (or reports why not) in the next request.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderValue;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{SetError, SsfReceiver};
use crate::builder::ConfigError;
use crate::fetch::{FetchError, acceptable_url, loggable};

/// Default [`SsfPoll::max_events`].
const DEFAULT_MAX_EVENTS: u32 = 100;
/// Default [`SsfPoll::interval`].
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The backoff after failures: 1 s, doubling, at most a minute.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A poll client of one transmitter's poll endpoint; from
/// [`SsfReceiver::poller`]. Call [`run`](Self::run) in a task of its
/// own, or [`poll_once`](Self::poll_once) to drive it yourself.
#[derive(Debug)]
pub struct SsfPoll {
    receiver: SsfReceiver,
    endpoint: Url,
    authorization: HeaderValue,
    max_events: u32,
    interval: Duration,
    /// What the next request acknowledges, and reports as refused.
    ack: Vec<String>,
    errs: BTreeMap<String, SetErr>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PollRequest<'a> {
    max_events: u32,
    return_immediately: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ack: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    set_errs: &'a BTreeMap<String, SetErr>,
}

#[derive(Serialize, Debug, Clone)]
struct SetErr {
    err: &'static str,
    description: &'static str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollResponse {
    #[serde(default)]
    sets: BTreeMap<String, String>,
    #[serde(default)]
    more_available: bool,
}

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Polled {
    /// SETs applied (acknowledged in the next request).
    pub applied: usize,
    /// SETs refused (reported in the next request).
    pub refused: usize,
    /// The transmitter holds more.
    pub more_available: bool,
}

impl SsfPoll {
    pub(super) fn new(
        receiver: SsfReceiver,
        endpoint: &str,
        authorization: &str,
    ) -> Result<Self, ConfigError> {
        let endpoint = acceptable_url(endpoint)
            .ok_or_else(|| ConfigError::InsecureUrl(endpoint.to_owned()))?;
        let authorization = HeaderValue::from_str(authorization)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::EmptyValue("poll authorization"))?;
        Ok(Self {
            receiver,
            endpoint,
            authorization,
            max_events: DEFAULT_MAX_EVENTS,
            interval: DEFAULT_INTERVAL,
            ack: Vec::new(),
            errs: BTreeMap::new(),
        })
    }

    /// At most this many SETs per answer (`maxEvents`). Default 100.
    pub fn max_events(mut self, n: u32) -> Self {
        self.max_events = n.max(1);
        self
    }

    /// How long [`run`](Self::run) waits between polls once the
    /// transmitter has nothing more. Default 5 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// One request: acknowledges what the last one applied, reports what
    /// it refused, and applies what comes back. A SET that could not be
    /// checked for want of the transmitter's keys is neither acknowledged
    /// nor refused, so that it comes again; the call then fails.
    pub async fn poll_once(&mut self) -> Result<Polled, FetchError> {
        let body = serde_json::to_vec(&PollRequest {
            max_events: self.max_events,
            return_immediately: true,
            ack: &self.ack,
            set_errs: &self.errs,
        })
        .map_err(|e| FetchError::InvalidDocument(e.to_string()))?;
        let answer = self
            .receiver
            .inner
            .fetcher
            .post_json(&self.endpoint, body, &self.authorization)
            .await?;
        // Sent, so the transmitter has them.
        self.ack.clear();
        self.errs.clear();
        let answer: PollResponse = serde_json::from_slice(&answer)
            .map_err(|e| FetchError::InvalidDocument(e.to_string()))?;
        let mut polled = Polled {
            more_available: answer.more_available,
            ..Polled::default()
        };
        for (jti, set) in answer.sets {
            match self.receiver.receive(&set).await {
                Ok(_) => {
                    polled.applied += 1;
                    self.ack.push(jti);
                }
                Err(SetError::KeysUnavailable { .. }) => {
                    return Err(FetchError::Transport(
                        "the transmitter's keys cannot be loaded".into(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(jti, error = %e, "polled SET refused");
                    polled.refused += 1;
                    let err = SetErr {
                        err: e.code(),
                        description: e.description(),
                    };
                    self.errs.insert(jti, err);
                }
            }
        }
        Ok(polled)
    }

    /// Polls for ever: at once again while the transmitter has more or
    /// acknowledgements are owed, else after the interval; after a failure
    /// after a backoff of 1 s doubling to a minute.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let wait = match self.poll_once().await {
                Ok(p) if p.more_available || !self.ack.is_empty() || !self.errs.is_empty() => {
                    failures = 0;
                    Duration::ZERO
                }
                Ok(_) => {
                    failures = 0;
                    self.interval
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(
                        endpoint = %loggable(&self.endpoint),
                        error = %e,
                        failures,
                        "SSF poll failed"
                    );
                    backoff(failures)
                }
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The wait after `failures` failures in a row.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(6);
    Duration::from_secs(1u64 << doublings).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_request_names_acks_and_errors_only_when_there_are_some() {
        let none = serde_json::to_value(PollRequest {
            max_events: 10,
            return_immediately: true,
            ack: &[],
            set_errs: &BTreeMap::new(),
        })
        .unwrap();
        assert_eq!(
            none,
            serde_json::json!({"maxEvents": 10, "returnImmediately": true})
        );
        let errs = BTreeMap::from([(
            "j2".to_owned(),
            SetErr {
                err: "invalid_key",
                description: "x",
            },
        )]);
        let some = serde_json::to_value(PollRequest {
            max_events: 10,
            return_immediately: true,
            ack: &["j1".to_owned()],
            set_errs: &errs,
        })
        .unwrap();
        assert_eq!(some["ack"], serde_json::json!(["j1"]));
        assert_eq!(some["setErrs"]["j2"]["err"], "invalid_key");
    }
}
