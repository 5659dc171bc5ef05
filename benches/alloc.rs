//! Heap allocations per request through the layer, on the cold path (a
//! token not seen before) and the cached path (a repeated token), counted
//! by a global allocator. Prints one line per path.
//!
//! `cargo bench --bench alloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Request, Response};
use tower::{Service, ServiceExt};
use tower_bearer::BearerAuth;
use tower_bearer::testing::TestIssuer;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idp = rt.block_on(TestIssuer::start()).unwrap();
    let auth = BearerAuth::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .jwks_json(idp.jwks_json())
        .build()
        .unwrap();
    let mut svc = tower::Layer::layer(
        &auth,
        tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }),
    );
    const N: u64 = 200;
    let tokens: Vec<String> = (0..=N)
        .map(|i| idp.token().scope("read write").claim("n", i).sign())
        .collect();
    let requests = |token: &str, n: u64| -> Vec<Request<()>> {
        (0..n)
            .map(|_| {
                Request::get("/")
                    .header("authorization", format!("Bearer {token}"))
                    .body(())
                    .unwrap()
            })
            .collect()
    };
    let mut measure = |reqs: Vec<Request<()>>| -> f64 {
        let n = reqs.len() as f64;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for req in reqs {
            let res = rt.block_on(async { svc.ready().await.unwrap().call(req).await.unwrap() });
            assert!(res.status().is_success());
            drop(res);
        }
        (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n
    };
    // Warm up: keys parsed, the cached token verified once.
    measure(requests(&tokens[0], 1));
    let cached = measure(requests(&tokens[0], N));
    let cold_reqs: Vec<Request<()>> = tokens[1..].iter().flat_map(|t| requests(t, 1)).collect();
    let cold = measure(cold_reqs);
    println!("allocations per request: cold {cold:.1}, cached {cached:.1}");
}
