//! The issuer's keys: parsing a JWK set ([`set`]), fetching it over HTTP
//! with discovery ([`fetch`]), and keeping the current set for the hot path
//! ([`store`]).

mod set;
mod share;
pub(crate) mod store;

pub use set::{JwksError, KeySet, SkippedKey};
pub(crate) use set::{Key, Lookup, proof_key, verify};
pub(crate) use share::{FetchBudget, StorePool};
pub use store::KeyHealth;
pub(crate) use store::{KeyPolicy, KeyStore, Source};
