//! Token verification cost: a cached remote JWKS against a fixed key set.
//!
//! Run with `cargo bench -p keyward-server --bench token_verify`. It serves the development
//! issuer's JWKS from a loopback HTTP server, lets a remote issuer fetch it once, then times
//! `Authenticator::verify` on the hot path (keys cached), sequentially and from several tasks
//! at once, next to the same verification with a fixed key set. Prints nanoseconds per token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_server::auth::dev_issuer::DevIssuer;
use keyward_server::auth::{Authenticator, IssuerSettings, JwksCacheSettings, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: u32 = 20_000;
const TASKS: u32 = 4;

async fn serve_jwks(body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
            });
        }
    });
    url
}

async fn time(label: &str, auth: Arc<Authenticator>, token: Arc<String>) {
    for _ in 0..500 {
        auth.verify(&token).await.unwrap();
    }
    let start = Instant::now();
    for _ in 0..N {
        auth.verify(&token).await.unwrap();
    }
    let seq = start.elapsed();
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (auth, token) = (auth.clone(), token.clone());
            tokio::spawn(async move {
                for _ in 0..N {
                    auth.verify(&token).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let par = start.elapsed();
    let ns = |d: Duration, n: u32| d.as_nanos() / u128::from(n);
    println!(
        "{label:<28} sequential {:>6} ns/token   {TASKS} tasks {:>6} ns/token ({:.0} tokens/s)",
        ns(seq, N),
        ns(par, N * TASKS),
        f64::from(N * TASKS) / par.as_secs_f64()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let dev = DevIssuer::load_or_create(dir.path(), "http://bench.test").unwrap();
        let token = Arc::new(
            dev.mint("bench", &[Role::Signer], Duration::from_secs(3600))
                .unwrap(),
        );
        let fixed = Arc::new(Authenticator::new(vec![dev.verifier(60).unwrap()]));
        let url = serve_jwks(dev.jwks().to_string()).await;
        let remote = Authenticator::remote_issuer(
            IssuerSettings {
                issuer: dev.issuer().to_string(),
                audiences: vec![dev.audience().to_string()],
                algorithms: vec![jsonwebtoken::Algorithm::EdDSA],
                roles_claim: "/roles".into(),
                groups_claim: None,
                role_map: Default::default(),
                leeway_seconds: 60,
            },
            Some(url),
            JwksCacheSettings::default(),
        )
        .unwrap();
        let remote = Arc::new(Authenticator::new(vec![remote]));
        remote.load_missing_keys().await;
        assert_eq!(remote.fetch_counts()[0].1, 1);
        time("fixed key set (EdDSA)", fixed, token.clone()).await;
        time("cached remote JWKS (EdDSA)", remote.clone(), token).await;
        assert_eq!(remote.fetch_counts()[0].1, 1, "the hot path never fetched");
    });
}
