//! Every replica's revocations carried to every other through a Redis
//! Stream (feature `redis`).
//!
//! ```text
//!  SSF push / API ──► RevocationList (replica A) ──► queue ──► XADD ─┐
//!                                                                    ▼
//!                                               Redis Stream tower-bearer:revocations
//!                                                (trimmed to the entries' lifetime)
//!                                                                    │
//!  RevocationList (replicas A, B, C, …) ◄── XREAD BLOCK from last id ◄┘
//! ```
//!
//! A revocation made on a replica ([`RevocationList::revoke`], or the SSF
//! receiver) applies there at once and is queued for the stream; each
//! replica follows the stream into its own list, so every lookup stays a
//! local, lock-free read. On start a replica replays what the stream
//! retains ([`RedisFanout::wait_replayed`] tells when it is done).
//!
//! Faults: while Redis is down every replica keeps its list, retries with
//! backoff (100 ms doubling to 2 s), and queues its own revocations in a
//! bounded queue whose overflow is logged at `error` (those revocations
//! stay local). When Redis is back, each publishes its queue and reads on
//! from its last id: nothing the stream retains is lost.
//!
//! Trust: the stream can only take access away. An entry revokes; nothing
//! read from Redis can make a token valid that the validator refuses, so
//! whoever can write to the stream can revoke (a denial of service), never
//! grant. [`RevocationList::unrevoke`] is local to its process.
//!
//! `rediss://` URLs use TLS (rustls, the system's roots unless
//! [`RedisFanoutBuilder::root_certificate`] names one), and a password in
//! the URL (`redis://:secret@host/`, or `user:secret@`) is sent with
//! `AUTH`.
//!
//! ```no_run
//! # async fn run() -> Result<(), tower_bearer::fleet::FleetError> {
//! use std::time::Duration;
//! use tower_bearer::{RevocationList, fleet::RedisFanout};
//!
//! let revoked = RevocationList::new();
//! let fanout = RedisFanout::builder("redis://127.0.0.1:6379/").start(&revoked)?;
//! // Serve once the retained revocations are in, or after 10 s anyway
//! // (logged at error).
//! fanout.wait_replayed(Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::streams::StreamReadReply;
use ::redis::{AsyncConnectionConfig, Client, aio::MultiplexedConnection};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::introspect::{Digest, Pending, SharedAnswers};
use crate::revocation::{RevocationList, Revoke};

/// The default stream key.
pub const DEFAULT_STREAM_KEY: &str = "tower-bearer:revocations";
/// How many revocations wait for Redis by default, at most.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// Entries read per `XREAD`.
const BATCH: usize = 512;
/// How long a blocking `XREAD` waits on the server.
const BLOCK: Duration = Duration::from_secs(1);
/// The largest entry applied: larger ones were not written by a replica.
const MAX_RECORD_BYTES: usize = 16 * 1024;

/// Why a fan-out or a shared cache cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetError {
    /// The Redis URL, or the root certificate, is unusable.
    Redis(String),
    /// The queue capacity is zero, or the stream key empty.
    EmptySetting(&'static str),
    /// A fan-out was started on this list already.
    AlreadyStarted,
    /// `start` was called outside a Tokio runtime.
    NoRuntime,
    /// The shared cache's key is shorter than 32 bytes.
    KeyTooShort,
}

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redis(e) => write!(f, "Redis: {e}"),
            Self::EmptySetting(what) => write!(f, "{what} must not be empty"),
            Self::AlreadyStarted => f.write_str("a fan-out was started on this list already"),
            Self::NoRuntime => f.write_str("start the fan-out inside a Tokio runtime"),
            Self::KeyTooShort => {
                f.write_str("the shared introspection cache key must be at least 32 bytes")
            }
        }
    }
}

impl std::error::Error for FleetError {}

/// Configures a [`RedisFanout`]; from [`RedisFanout::builder`].
#[derive(Debug, Clone)]
pub struct RedisFanoutBuilder {
    url: String,
    stream: String,
    queue: usize,
    root_certificate: Option<Vec<u8>>,
}

/// A running fan-out: a task publishing this replica's revocations and
/// one following everyone's. Both stop when it is dropped.
#[derive(Debug)]
pub struct RedisFanout {
    replayed: watch::Receiver<bool>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for RedisFanout {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RedisFanout {
    /// A fan-out through the Redis at `url` (`redis://`, `rediss://`).
    pub fn builder(url: impl Into<String>) -> RedisFanoutBuilder {
        RedisFanoutBuilder {
            url: url.into(),
            stream: DEFAULT_STREAM_KEY.to_owned(),
            queue: DEFAULT_QUEUE_CAPACITY,
            root_certificate: None,
        }
    }

    /// Whether the revocations the stream held at start are applied.
    pub fn is_replayed(&self) -> bool {
        *self.replayed.borrow()
    }

    /// Waits until the retained revocations are applied, at most `bound`;
    /// `false` (and an `error` log: the replica may accept tokens the
    /// fleet revoked) when the bound passed first.
    pub async fn wait_replayed(&self, bound: Duration) -> bool {
        let mut replayed = self.replayed.clone();
        let done = tokio::time::timeout(bound, replayed.wait_for(|r| *r)).await;
        let done = matches!(done, Ok(Ok(_)));
        if !done {
            tracing::error!(
                waited_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
                "the fleet's revocations are not replayed yet: serving without them; \
                 tokens revoked elsewhere may pass until Redis answers"
            );
        }
        done
    }
}

impl RedisFanoutBuilder {
    /// The stream's key. Default [`DEFAULT_STREAM_KEY`]; replicas sharing
    /// revocations use the same.
    pub fn stream_key(mut self, key: impl Into<String>) -> Self {
        self.stream = key.into();
        self
    }

    /// How many of this replica's revocations may wait for Redis. Default
    /// [`DEFAULT_QUEUE_CAPACITY`].
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue = n;
        self
    }

    /// Trust this CA (PEM) for `rediss://` instead of the system's roots.
    pub fn root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate = Some(pem.into());
        self
    }

    /// Starts publishing `list`'s revocations and following the stream
    /// into it. Needs a Tokio runtime; connects in the background.
    pub fn start(self, list: &RevocationList) -> Result<RedisFanout, FleetError> {
        let err = |e: ::redis::RedisError| FleetError::Redis(e.to_string());
        let client = match self.root_certificate {
            Some(pem) => Client::build_with_tls(
                self.url.as_str(),
                ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(err)?,
            None => Client::open(self.url.as_str()).map_err(err)?,
        };
        if self.queue == 0 {
            return Err(FleetError::EmptySetting("the queue capacity"));
        }
        if self.stream.is_empty() {
            return Err(FleetError::EmptySetting("the stream key"));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| FleetError::NoRuntime)?;
        let (tx, rx) = mpsc::channel::<String>(self.queue);
        let queued = list.set_outbox(Box::new(move |what, until| {
            let Ok(record) = serde_json::to_string(&Record::of(what, until)) else {
                return;
            };
            match tx.try_send(record) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => tracing::error!(
                    "the revocation queue for Redis is full: this revocation stays on this replica"
                ),
                Err(mpsc::error::TrySendError::Closed(_)) => tracing::error!(
                    "the Redis fan-out has stopped: this revocation stays on this replica"
                ),
            }
        }));
        if !queued {
            return Err(FleetError::AlreadyStarted);
        }
        let (replayed_tx, replayed) = watch::channel(false);
        let publisher = Publisher {
            client: client.clone(),
            stream: self.stream.clone(),
            list: list.clone(),
        };
        let follower = Follower {
            client,
            stream: self.stream,
            list: list.clone(),
            replayed: replayed_tx,
        };
        Ok(RedisFanout {
            replayed,
            tasks: [
                runtime.spawn(publisher.run(rx)),
                runtime.spawn(follower.run()),
            ],
        })
    }
}

/// A revocation as the stream carries it: times in seconds since the
/// epoch.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Record {
    #[serde(flatten)]
    what: Wire,
    until: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    TokenId {
        jti: String,
    },
    Subject {
        sub: String,
    },
    Client {
        client: String,
    },
    IssuedToken {
        iss: String,
        jti: String,
    },
    IssuedTo {
        iss: String,
        client: String,
    },
    SubjectBefore {
        iss: String,
        sub: String,
        before: u64,
    },
    SessionBefore {
        iss: String,
        sid: String,
        before: u64,
    },
    EmailBefore {
        iss: String,
        email: String,
        before: u64,
    },
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}

impl Record {
    fn of(what: &Revoke, until: SystemTime) -> Self {
        let s = String::clone;
        let what = match what {
            Revoke::TokenId(jti) => Wire::TokenId { jti: s(jti) },
            Revoke::Subject(sub) => Wire::Subject { sub: s(sub) },
            Revoke::Client(client) => Wire::Client { client: s(client) },
            Revoke::IssuedToken { issuer, jti } => Wire::IssuedToken {
                iss: s(issuer),
                jti: s(jti),
            },
            Revoke::IssuedTo { issuer, client } => Wire::IssuedTo {
                iss: s(issuer),
                client: s(client),
            },
            Revoke::SubjectBefore {
                issuer,
                subject,
                before,
            } => Wire::SubjectBefore {
                iss: s(issuer),
                sub: s(subject),
                before: secs(*before),
            },
            Revoke::SessionBefore {
                issuer,
                sid,
                before,
            } => Wire::SessionBefore {
                iss: s(issuer),
                sid: s(sid),
                before: secs(*before),
            },
            Revoke::EmailBefore {
                issuer,
                email,
                before,
            } => Wire::EmailBefore {
                iss: s(issuer),
                email: s(email),
                before: secs(*before),
            },
        };
        Self {
            what,
            until: secs(until),
        }
    }

    fn revocation(self) -> (Revoke, SystemTime) {
        let what = match self.what {
            Wire::TokenId { jti } => Revoke::TokenId(jti),
            Wire::Subject { sub } => Revoke::Subject(sub),
            Wire::Client { client } => Revoke::Client(client),
            Wire::IssuedToken { iss, jti } => Revoke::IssuedToken { issuer: iss, jti },
            Wire::IssuedTo { iss, client } => Revoke::IssuedTo {
                issuer: iss,
                client,
            },
            Wire::SubjectBefore { iss, sub, before } => Revoke::SubjectBefore {
                issuer: iss,
                subject: sub,
                before: time(before),
            },
            Wire::SessionBefore { iss, sid, before } => Revoke::SessionBefore {
                issuer: iss,
                sid,
                before: time(before),
            },
            Wire::EmailBefore { iss, email, before } => Revoke::EmailBefore {
                issuer: iss,
                email,
                before: time(before),
            },
        };
        (what, time(self.until))
    }
}

/// The wait before the next try after `failures` failures in a row.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(5);
    (Duration::from_millis(100) * (1u32 << doublings)).min(Duration::from_secs(2))
}

async fn connect(
    client: &Client,
    response_timeout: Duration,
) -> ::redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

struct Publisher {
    client: Client,
    stream: String,
    list: RevocationList,
}

impl Publisher {
    /// Appends each queued revocation, in order; one that fails is tried
    /// again, after a backoff, before the next.
    async fn run(self, mut queue: mpsc::Receiver<String>) {
        let mut conn = None;
        let mut failures = 0u32;
        let mut next = None;
        loop {
            let record = match next.take() {
                Some(r) => r,
                None => match queue.recv().await {
                    Some(r) => r,
                    None => return,
                },
            };
            match self.append(&mut conn, &record).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!("revocations reach Redis again");
                    }
                    failures = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(error = %e, "cannot publish revocations to Redis; retrying");
                    }
                    conn = None;
                    next = Some(record);
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    }

    async fn append(
        &self,
        conn: &mut Option<MultiplexedConnection>,
        record: &str,
    ) -> ::redis::RedisResult<()> {
        if conn.is_none() {
            *conn = Some(connect(&self.client, Duration::from_secs(2)).await?);
        }
        let Some(c) = conn.as_mut() else {
            return Ok(());
        };
        // Entries older than a revocation's lifetime revoke nothing any
        // more: the stream drops them (approximately, `~`, which is cheap).
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let oldest = now.saturating_sub(self.list.retention()).as_millis();
        ::redis::cmd("XADD")
            .arg(&self.stream)
            .arg("MINID")
            .arg("~")
            .arg(u64::try_from(oldest).unwrap_or(0))
            .arg("*")
            .arg("r")
            .arg(record)
            .query_async::<String>(c)
            .await
            .map(drop)
    }
}

struct Follower {
    client: Client,
    stream: String,
    list: RevocationList,
    replayed: watch::Sender<bool>,
}

impl Follower {
    async fn run(self) {
        let mut last = String::from("0-0");
        let mut failures = 0u32;
        let mut applied = 0usize;
        loop {
            // A blocking read holds its connection: this one is its own.
            let read = async {
                let mut conn = connect(&self.client, BLOCK + Duration::from_secs(2)).await?;
                if failures > 0 {
                    tracing::info!("following the fleet's revocations again");
                }
                failures = 0;
                loop {
                    let replaying = !*self.replayed.borrow();
                    let mut cmd = ::redis::cmd("XREAD");
                    cmd.arg("COUNT").arg(BATCH);
                    if !replaying {
                        cmd.arg("BLOCK")
                            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(1000));
                    }
                    cmd.arg("STREAMS").arg(&self.stream).arg(&last);
                    let reply: Option<StreamReadReply> = cmd.query_async(&mut conn).await?;
                    let mut read = 0;
                    for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                        read += 1;
                        self.apply(entry.get::<String>("r").as_deref());
                        last = entry.id;
                    }
                    applied += read;
                    if replaying && read < BATCH {
                        tracing::info!(
                            revocations = applied,
                            "the fleet's revocations are replayed"
                        );
                        self.replayed.send_replace(true);
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), ::redis::RedisError>(())
            };
            if let Err(e) = read.await {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(error = %e, "cannot follow the fleet's revocations in Redis; retrying");
                }
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }

    /// Applies one entry; one that is not a revocation is logged and
    /// skipped.
    fn apply(&self, record: Option<&str>) {
        let parsed = record
            .filter(|r| r.len() <= MAX_RECORD_BYTES)
            .and_then(|r| serde_json::from_str::<Record>(r).ok());
        let Some(record) = parsed else {
            tracing::warn!(stream = %self.stream, "skipped a stream entry that is not a revocation");
            return;
        };
        let (what, until) = record.revocation();
        if until > SystemTime::now() {
            self.list.apply(&what, until);
        }
    }
}

/// The key prefix of the shared introspection cache's entries.
const CACHE_PREFIX: &str = "tower-bearer:introspection:";
/// After a failed connection, how long requests skip the shared cache.
const CACHE_RETRY: Duration = Duration::from_secs(1);

/// Introspection answers shared by the replicas through Redis; give it to
/// [`Builder::shared_introspection_cache`](crate::Builder::shared_introspection_cache).
///
/// An entry is the endpoint's answer, kept no longer than the answer may
/// be reused (the introspection maximum age, never past the token's
/// `exp`), under a name derived from the token with the key (Redis sees
/// neither the token nor its plain digest), and authenticated with
/// HMAC-SHA256 under the same key over the name, the time and the answer.
/// An entry whose MAC does not verify is a miss, logged at `warn`: a
/// write to Redis cannot grant access. Redis errors are misses too; after
/// a failed connection the cache is skipped for a second.
pub struct SharedIntrospectionCache {
    client: Client,
    key: aws_lc_rs::hmac::Key,
    conn: tokio::sync::Mutex<(Option<MultiplexedConnection>, Option<std::time::Instant>)>,
}

impl std::fmt::Debug for SharedIntrospectionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedIntrospectionCache")
            .finish_non_exhaustive()
    }
}

impl SharedIntrospectionCache {
    /// A cache in the Redis at `url`, its entries authenticated with
    /// `key`: at least 32 bytes, the same on every replica, secret.
    pub fn new(url: &str, key: &[u8]) -> Result<Self, FleetError> {
        if key.len() < 32 {
            return Err(FleetError::KeyTooShort);
        }
        let client = Client::open(url).map_err(|e| FleetError::Redis(e.to_string()))?;
        Ok(Self {
            client,
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
            conn: tokio::sync::Mutex::new((None, None)),
        })
    }

    /// The entry's name: keyed, so that Redis learns nothing of the token.
    fn name(&self, token: &Digest) -> String {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.key);
        ctx.update(b"name");
        ctx.update(token);
        let tag = ctx.sign();
        let mut name = String::from(CACHE_PREFIX);
        for b in tag.as_ref() {
            name.push_str(&format!("{b:02x}"));
        }
        name
    }

    /// What an entry's MAC covers: its name (so that an entry cannot be
    /// moved to another token), its time and the answer.
    fn signed(name: &str, fetched_at: u64, body: &[u8]) -> Vec<u8> {
        [
            b"entry".as_slice(),
            name.as_bytes(),
            &fetched_at.to_be_bytes(),
            body,
        ]
        .concat()
    }

    /// A connection, unless one failed within the last second.
    async fn connection(&self) -> Option<MultiplexedConnection> {
        let mut state = self.conn.lock().await;
        if let Some(c) = &state.0 {
            return Some(c.clone());
        }
        if state.1.is_some_and(|at| at.elapsed() < CACHE_RETRY) {
            return None;
        }
        match connect(&self.client, Duration::from_millis(500)).await {
            Ok(c) => {
                *state = (Some(c.clone()), None);
                Some(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, "shared introspection cache unreachable; introspecting");
                *state = (None, Some(std::time::Instant::now()));
                None
            }
        }
    }

    async fn failed(&self, e: &::redis::RedisError) {
        tracing::warn!(error = %e, "shared introspection cache failed; introspecting");
        *self.conn.lock().await = (None, Some(std::time::Instant::now()));
    }

    async fn lookup(&self, token: Digest) -> Option<(Vec<u8>, SystemTime)> {
        let mut conn = self.connection().await?;
        let name = self.name(&token);
        let value: Option<Vec<u8>> =
            match ::redis::cmd("GET").arg(&name).query_async(&mut conn).await {
                Ok(v) => v,
                Err(e) => {
                    self.failed(&e).await;
                    return None;
                }
            };
        let value = value?;
        let authentic = value.split_at_checked(32).and_then(|(tag, rest)| {
            let (at, body) = rest.split_at_checked(8)?;
            let at = u64::from_be_bytes(at.try_into().ok()?);
            // Constant time.
            aws_lc_rs::hmac::verify(&self.key, &Self::signed(&name, at, body), tag).ok()?;
            Some((body.to_vec(), time(at)))
        });
        match authentic {
            Some(found) => Some(found),
            None => {
                tracing::warn!(
                    "a shared introspection entry failed authentication: treated as a miss"
                );
                None
            }
        }
    }

    async fn store(&self, token: Digest, body: Vec<u8>, fetched_at: SystemTime, ttl: Duration) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let name = self.name(&token);
        let at = secs(fetched_at);
        let tag = aws_lc_rs::hmac::sign(&self.key, &Self::signed(&name, at, &body));
        let mut value = tag.as_ref().to_vec();
        value.extend_from_slice(&at.to_be_bytes());
        value.extend_from_slice(&body);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: ::redis::RedisResult<()> = ::redis::cmd("SET")
            .arg(&name)
            .arg(value)
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await;
        if let Err(e) = set {
            self.failed(&e).await;
        }
    }
}

impl SharedAnswers for SharedIntrospectionCache {
    fn get(&self, token: Digest) -> Pending<'_, Option<(Vec<u8>, SystemTime)>> {
        Box::pin(self.lookup(token))
    }

    fn put(
        &self,
        token: Digest,
        body: Vec<u8>,
        fetched_at: SystemTime,
        ttl: Duration,
    ) -> Pending<'_, ()> {
        Box::pin(self.store(token, body, fetched_at, ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_revocation_survives_the_stream() {
        let t = time(1_700_000_000);
        let all = [
            Revoke::TokenId("j".into()),
            Revoke::Subject("s".into()),
            Revoke::Client("c".into()),
            Revoke::IssuedToken {
                issuer: "i".into(),
                jti: "j".into(),
            },
            Revoke::IssuedTo {
                issuer: "i".into(),
                client: "c".into(),
            },
            Revoke::SubjectBefore {
                issuer: "i".into(),
                subject: "s".into(),
                before: t,
            },
            Revoke::SessionBefore {
                issuer: "i".into(),
                sid: "x".into(),
                before: t,
            },
            Revoke::EmailBefore {
                issuer: "i".into(),
                email: "a@b".into(),
                before: t,
            },
        ];
        for what in all {
            let json = serde_json::to_string(&Record::of(&what, t)).unwrap();
            let back: Record = serde_json::from_str(&json).unwrap();
            assert_eq!(back.revocation(), (what, t), "{json}");
        }
    }

    #[test]
    fn backoff_doubles_to_two_seconds() {
        let ms: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }
}
