//! What key stores share across issuers: one store per JWKS URL
//! ([`StorePool`]), and a budget of request-triggered fetches for the
//! issuers an issuer template makes up on first use ([`FetchBudget`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use url::Url;

use super::store::KeyStore;
use crate::alg::Algorithm;

/// The key stores of one validator by JWKS URL and algorithm list: two
/// issuers whose keys live at the same URL (configured, or named by their
/// discovery), read with the same algorithms, share one store, so one
/// fetch and one set serve both. Every store here fetches its one URL and
/// never discovers: what one issuer's discovery names cannot change the
/// keys of another issuer.
#[derive(Default)]
pub(crate) struct StorePool {
    stores: Mutex<HashMap<Where, Weak<KeyStore>>>,
}

/// A JWKS URL and the algorithms its set is read with.
type Where = (Url, Box<[Algorithm]>);

impl StorePool {
    /// The live store for `url` read with `algorithms`, if there is one;
    /// otherwise `make`'s, which is kept for those that come later.
    pub(crate) fn get_or_insert(
        &self,
        url: &Url,
        algorithms: &[Algorithm],
        make: impl FnOnce() -> Arc<KeyStore>,
    ) -> Arc<KeyStore> {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (url.clone(), Box::from(algorithms));
        if let Some(store) = stores.get(&key).and_then(Weak::upgrade) {
            return store;
        }
        let store = make();
        stores.retain(|_, s| s.strong_count() > 0);
        stores.insert(key, Arc::downgrade(&store));
        store
    }
}

/// Request-triggered fetches for the issuers of one template, by tenant:
/// at most one per tenant per `window`, and at most `max` in a window in
/// all, however often the tenant's issuer is dropped from the bounded
/// cache and made again. Two windows are remembered, so a tenant waits at
/// least one whole window between two fetches.
pub(crate) struct FetchBudget {
    window: Duration,
    max: usize,
    state: Mutex<Windows>,
}

struct Windows {
    start: Option<SystemTime>,
    current: HashSet<Box<str>>,
    previous: HashSet<Box<str>>,
}

impl FetchBudget {
    pub(crate) fn new(window: Duration, max: usize) -> Self {
        Self {
            window,
            max,
            state: Mutex::new(Windows {
                start: None,
                current: HashSet::new(),
                previous: HashSet::new(),
            }),
        }
    }

    /// Whether `tenant` may fetch now, recording it if so.
    pub(crate) fn allow(&self, tenant: &str, now: SystemTime) -> bool {
        let mut w = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = w
            .start
            .map(|start| now.duration_since(start).unwrap_or_default());
        match elapsed {
            Some(e) if e < self.window => {}
            // The next window: the current one becomes the previous one,
            // unless a whole window passed with nothing recorded.
            Some(e) => {
                w.previous = if e < self.window.saturating_mul(2) {
                    std::mem::take(&mut w.current)
                } else {
                    HashSet::new()
                };
                w.current.clear();
                w.start = Some(now);
            }
            None => w.start = Some(now),
        }
        if w.current.contains(tenant) || w.previous.contains(tenant) || w.current.len() >= self.max
        {
            return false;
        }
        w.current.insert(Box::from(tenant));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_fetches_once_per_window_and_a_window_at_most_max() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let budget = FetchBudget::new(Duration::from_secs(30), 2);
        assert!(budget.allow("a", at(0)));
        assert!(!budget.allow("a", at(1)));
        assert!(budget.allow("b", at(2)));
        assert!(!budget.allow("c", at(3)), "two in this window already");
        // The next window: `a` and `b` are the previous window's.
        assert!(!budget.allow("a", at(31)));
        assert!(budget.allow("c", at(32)));
        // Two windows on, `a` may fetch again: at least 30 s after it did.
        assert!(budget.allow("a", at(62)));
        // After a long quiet spell nothing is remembered.
        assert!(budget.allow("c", at(500)));
    }
}
