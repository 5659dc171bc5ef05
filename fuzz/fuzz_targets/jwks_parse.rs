//! JWKS document parsing: any bytes give a key set or an error, never a
//! panic, and never more keys than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bearer::{Algorithm, KeySet, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok((set, skipped)) = KeySet::parse(data, &Algorithm::DEFAULT_ALLOWED, &limits) {
        assert!(set.len() + skipped.len() <= limits.max_jwks_keys);
        let _ = set.kids().count();
    }
});
