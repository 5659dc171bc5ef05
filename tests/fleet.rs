//! Replicas of `examples/resource_server` sharing revocations through a
//! real `redis-server` (Debian's package; `./scripts/test` installs it),
//! started here on a free loopback port and killed and restarted to show
//! that nothing within retention is lost. Skipped when `redis-server` is
//! missing and `./scripts/test` did not ask for it.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use tower_bearer::testing::TestIssuer;

const AUDIENCE: &str = "documents-api";

/// A `redis-server` on loopback, without persistence: a restart empties
/// it, as a lost Redis would be.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn binary() -> Option<&'static str> {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return Some("redis-server");
        }
        assert!(
            std::env::var_os("TOWER_BEARER_INTEROP").is_none(),
            "TOWER_BEARER_INTEROP is set but redis-server is missing: ./scripts/test installs it"
        );
        println!("skipped: redis-server not installed (./scripts/test installs it)");
        None
    }

    async fn start() -> Option<Self> {
        Self::binary()?;
        for _ in 0..20 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            if let Some(redis) = Self::on(port).await {
                return Some(redis);
            }
        }
        panic!("redis-server found no free port");
    }

    /// `redis-server` on `port`, once it answers `PING`; `None` if it
    /// exits first (the port was taken meanwhile).
    async fn on(port: u16) -> Option<Self> {
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                std::env::temp_dir().to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            if ping(port).await {
                return Some(Self { child, port });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server on {port} does not answer");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn kill(mut self) -> u16 {
        self.child.kill().await.unwrap();
        self.port
    }
}

async fn ping(port: u16) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").await.is_ok()
        && s.read_exact(&mut buf).await.is_ok()
        && &buf == b"+PONG\r\n"
}

async fn replica(idp: &TestIssuer, redis_url: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("ISSUER", idp.issuer()),
        ("AUDIENCE", AUDIENCE),
        ("REDIS_URL", redis_url),
    ];
    env.extend_from_slice(extra);
    common::resource_server(&env).await
}

struct Fleet {
    idp: TestIssuer,
    http: reqwest::Client,
    admin: String,
}

impl Fleet {
    async fn new() -> Self {
        let idp = TestIssuer::builder()
            .audience(AUDIENCE)
            .start()
            .await
            .unwrap();
        let admin = idp
            .token()
            .claim("sub", "operator")
            .scope("admin")
            .expires_in(3600)
            .sign();
        Self {
            idp,
            http: reqwest::Client::new(),
            admin,
        }
    }

    /// Three replicas following the Redis at `url`.
    async fn three(&self, url: &str) -> [Server; 3] {
        [
            replica(&self.idp, url, &[]).await,
            replica(&self.idp, url, &[]).await,
            replica(&self.idp, url, &[]).await,
        ]
    }

    fn token(&self) -> String {
        self.idp.token().expires_in(3600).sign()
    }

    async fn status(&self, server: &Server, token: &str) -> u16 {
        self.http
            .get(format!("{}/me", server.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn revoke(&self, server: &Server, token: &str) {
        let jti = common::claims_of(token)["jti"].as_str().unwrap().to_owned();
        let res = self
            .http
            .post(format!("{}/admin/revocations", server.base))
            .bearer_auth(&self.admin)
            .json(&json!({ "jti": jti }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }

    /// How long until `server` refuses `token`; panics after 20 s.
    async fn refused_after(&self, server: &Server, token: &str, since: Instant) -> Duration {
        loop {
            if self.status(server, token).await == 401 {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < Duration::from_secs(20),
                "{} still accepts it",
                server.base
            );
        }
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test]
async fn a_revocation_on_one_replica_is_refused_on_the_others_and_how_fast() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let fleet = Fleet::new().await;
    let [a, b, c] = fleet.three(&redis.url()).await;
    let mut times = Vec::new();
    for _ in 0..200 {
        let token = fleet.token();
        for server in [&a, &b, &c] {
            // Cached as valid on each first.
            assert_eq!(fleet.status(server, &token).await, 200);
        }
        fleet.revoke(&a, &token).await;
        let revoked = Instant::now();
        assert_eq!(fleet.status(&a, &token).await, 401);
        times.push(fleet.refused_after(&b, &token, revoked).await);
        times.push(fleet.refused_after(&c, &token, revoked).await);
    }
    times.sort();
    println!(
        "propagation over {} revocations (B and C): p50 {:?}, p99 {:?}, max {:?}",
        times.len() / 2,
        percentile(&times, 50),
        percentile(&times, 99),
        times[times.len() - 1]
    );
    // Someone else's token is untouched.
    assert_eq!(fleet.status(&b, &fleet.token()).await, 200);
}

#[tokio::test]
async fn nothing_is_lost_while_redis_is_down_nor_for_a_replica_restarted() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let fleet = Fleet::new().await;
    let url = redis.url();
    let [a, b, mut c] = fleet.three(&url).await;
    let before = fleet.token();
    fleet.revoke(&a, &before).await;
    fleet.refused_after(&c, &before, Instant::now()).await;

    let port = redis.kill().await;
    let during = fleet.token();
    assert_eq!(fleet.status(&b, &during).await, 200);
    fleet.revoke(&a, &during).await;
    assert_eq!(
        fleet.status(&a, &during).await,
        401,
        "A applies its own at once"
    );
    assert_eq!(fleet.status(&b, &before).await, 401, "B keeps its list");
    // C restarts while Redis is down: it serves after its bound.
    c.child.kill().await.unwrap();
    c = replica(&fleet.idp, &url, &[("REDIS_REPLAY_WAIT", "1")]).await;

    let _redis = Redis::on(port)
        .await
        .expect("redis-server restarts on its port");
    fleet.refused_after(&b, &during, Instant::now()).await;
    fleet.refused_after(&c, &during, Instant::now()).await;

    // C restarted with Redis up replays the retained revocation before it
    // serves: refused from its first request.
    c.child.kill().await.unwrap();
    let c = replica(&fleet.idp, &url, &[]).await;
    assert_eq!(fleet.status(&c, &during).await, 401);
    assert_eq!(fleet.status(&c, &fleet.token()).await, 200);
}

#[tokio::test]
async fn an_ssf_event_pushed_to_one_replica_reaches_the_others() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let Some(dir) = common::interop_dir() else {
        return;
    };
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("transmitter.mjs")).env("PORT", "0");
    let (_transmitter, tx) = common::listening(cmd).await;
    let fleet = Fleet::new().await;
    let url = redis.url();
    let ssf = [
        ("SSF_ISSUER", tx.as_str()),
        ("SSF_PUSH_AUTHORIZATION", "Bearer push-secret"),
    ];
    let a = replica(&fleet.idp, &url, &ssf).await;
    let b = replica(&fleet.idp, &url, &[]).await;
    let alice = fleet
        .idp
        .token()
        .claim("sub", "alice")
        .claim("iat", now() - 30)
        .sign();
    assert_eq!(fleet.status(&b, &alice).await, 200);
    let set = fleet
        .http
        .post(format!("{tx}/test/sign"))
        .json(&json!({"payload": {
            "iss": tx,
            "aud": AUDIENCE,
            "iat": now(),
            "jti": "fleet-1",
            "sub_id": {"format": "iss_sub", "iss": fleet.idp.issuer(), "sub": "alice"},
            "events": {"https://schemas.openid.net/secevent/risc/event-type/account-disabled": {}},
        }}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["set"]
        .as_str()
        .unwrap()
        .to_owned();
    let pushed = fleet
        .http
        .post(format!("{tx}/test/push"))
        .json(&json!({
            "endpoint": format!("{}/ssf/events", a.base),
            "set": set,
            "authorization": "Bearer push-secret",
        }))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(pushed["status"], 202, "{pushed}");
    fleet.refused_after(&b, &alice, Instant::now()).await;
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// One command to the Redis on `port` (RESP), its reply as raw text.
async fn redis_cmd(port: u16, args: &[&[u8]]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    s.write_all(&req).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await.unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn replicas_share_introspection_answers_and_a_forged_one_is_a_miss() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let fleet = Fleet::new().await;
    let endpoint = fleet.idp.introspection_endpoint();
    let (id, secret) = TestIssuer::INTROSPECTION_CLIENT;
    let url = redis.url();
    let env = [
        ("INTROSPECTION_URI", endpoint.as_str()),
        ("INTROSPECTION_CLIENT_ID", id),
        ("INTROSPECTION_CLIENT_SECRET", secret),
        ("REDIS_CACHE_KEY", "a shared secret of at least 32 bytes"),
    ];
    let replicas = [
        replica(&fleet.idp, &url, &env).await,
        replica(&fleet.idp, &url, &env).await,
        replica(&fleet.idp, &url, &env).await,
    ];
    let token = fleet.idp.token().expires_in(3600).opaque();
    for r in &replicas {
        assert_eq!(fleet.status(r, &token).await, 200);
    }
    assert_eq!(fleet.idp.introspections(), 1, "N replicas, one call");

    // Every entry overwritten by someone who can write to Redis but has
    // not the key: a miss, so the next replica asks the endpoint (and
    // refuses a token it does not know).
    let keys = redis_cmd(redis.port, &[b"KEYS", b"tower-bearer:introspection:*"]).await;
    let keys = String::from_utf8(keys).unwrap();
    let names: Vec<&str> = keys
        .lines()
        .filter(|l| l.starts_with("tower-bearer:"))
        .collect();
    assert_eq!(names.len(), 1, "{keys}");
    let forged = [
        vec![0u8; 32],
        0u64.to_be_bytes().to_vec(),
        br#"{"active":true}"#.to_vec(),
    ]
    .concat();
    redis_cmd(redis.port, &[b"SET", names[0].as_bytes(), &forged]).await;
    let fourth = replica(&fleet.idp, &url, &env).await;
    assert_eq!(fleet.status(&fourth, &token).await, 200);
    assert_eq!(fleet.idp.introspections(), 2, "the forged entry was used");
}

#[tokio::test]
async fn rediss_and_a_password_in_the_url_carry_revocations() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tower_bearer::fleet::RedisFanout;
    use tower_bearer::{RevocationList, Revoke};

    if Redis::binary().is_none() {
        return;
    }
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let ca_issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca_issuer)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tower-bearer-rediss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (cert, key, ca_file) = (
        write("server.pem", leaf.pem()),
        write("server.key", leaf_key.serialize_pem()),
        write("ca.pem", ca.pem()),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
        ])
        .args([
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca_file,
        ])
        .args([
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret",
            "--save",
            "",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("Ready to accept connections") {
        line.clear();
        use tokio::io::AsyncBufReadExt as _;
        assert!(
            out.read_line(&mut line).await.unwrap() > 0,
            "redis-server with TLS exited"
        );
    }
    tokio::spawn(async move { tokio::io::copy(&mut out, &mut tokio::io::sink()).await });

    let url = format!("rediss://:s3cret@127.0.0.1:{port}/");
    let (here, there) = (RevocationList::new(), RevocationList::new());
    let start = |list: &RevocationList| {
        RedisFanout::builder(&url)
            .root_certificate(ca.pem())
            .start(list)
            .unwrap()
    };
    let (a, b) = (start(&here), start(&there));
    assert!(a.wait_replayed(Duration::from_secs(10)).await);
    assert!(b.wait_replayed(Duration::from_secs(10)).await);
    here.revoke(Revoke::TokenId("t-1".into()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while there.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the revocation did not arrive over TLS"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A wrong password: never replayed, within its bound.
    let wrong = RevocationList::new();
    let fanout = RedisFanout::builder(format!("rediss://:wrong@127.0.0.1:{port}/"))
        .root_certificate(ca.pem())
        .start(&wrong)
        .unwrap();
    assert!(!fanout.wait_replayed(Duration::from_millis(300)).await);
    assert!(wrong.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: the queue fills before the publisher task runs at all.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_is_logged_at_error_and_what_was_queued_is_published_later() {
    use tower_bearer::fleet::RedisFanout;
    use tower_bearer::{RevocationList, Revoke};

    if Redis::binary().is_none() {
        return;
    }
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Redis is not there yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let list = RevocationList::new();
    let _fanout = RedisFanout::builder(&url)
        .queue_capacity(3)
        .start(&list)
        .unwrap();
    for i in 0..10 {
        list.revoke(Revoke::TokenId(format!("q-{i}")));
    }
    assert_eq!(list.len(), 10, "every revocation applies here");
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let full: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("queue for Redis is full"))
        .collect();
    assert_eq!(full.len(), 7, "{text}");
    assert!(full.iter().all(|l| l.contains("ERROR")), "{text}");

    let _redis = Redis::on(port).await.expect("redis-server on the port");
    let other = RevocationList::new();
    let follower = RedisFanout::builder(&url).start(&other).unwrap();
    assert!(follower.wait_replayed(Duration::from_secs(10)).await);
    let deadline = Instant::now() + Duration::from_secs(20);
    while other.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the queue was not published: {}",
            other.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(other.len(), 3, "exactly what the queue held");
}
