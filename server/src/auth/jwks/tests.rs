use super::*;
use std::sync::atomic::AtomicUsize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback HTTP server answering each request with `answer(path)` (raw head + body),
/// or never answering when it returns `None`. Counts requests.
async fn http_server(
    answer: impl Fn(&str, u16) -> Option<(String, Vec<u8>)> + Send + Sync + 'static,
) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                counter.fetch_add(1, Ordering::SeqCst);
                match answer(&path, port) {
                    Some((head, body)) => {
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(&body).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    (port, hits)
}

fn ok(body: Vec<u8>, extra: &str) -> Option<(String, Vec<u8>)> {
    Some((
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n{extra}\r\n",
            body.len()
        ),
        body,
    ))
}

fn redirect(to: String) -> Option<(String, Vec<u8>)> {
    Some((
        format!(
            "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\
             connection: close\r\n\r\n"
        ),
        Vec::new(),
    ))
}

const JWKS: &str = r#"{"keys":[
    {"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":"a",
     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
    {"kty":"OKP","crv":"Ed25519","use":"enc","kid":"e",
     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
    {"kty":"oct","k":"c2VjcmV0","kid":"o","alg":"HS256"},
    {"kty":"RSA","kid":"broken","n":"!!","e":"AQAB"}]}"#;

fn settings() -> JwksCacheSettings {
    JwksCacheSettings {
        fetch_timeout: Duration::from_secs(1),
        ..JwksCacheSettings::default()
    }
}

fn remote(uri: String) -> RemoteKeys {
    RemoteKeys::new(
        "http://issuer.test",
        Some(uri),
        vec![JwtAlg::EdDSA, JwtAlg::RS256],
        settings(),
    )
    .unwrap()
}

#[tokio::test]
async fn only_signature_keys_load_and_concurrent_refreshes_share_one_fetch() {
    let (port, hits) = http_server(|_, _| ok(JWKS.as_bytes().to_vec(), "")).await;
    let keys = Arc::new(remote(format!("http://127.0.0.1:{port}/jwks")));
    let seen = keys.generation();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let k = keys.clone();
            tokio::spawn(async move { k.refresh(seen).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let status = keys.status();
    assert!(status.loaded, "{status:?}");
    // The `enc` key, the symmetric key and the unparsable key are skipped.
    assert_eq!(status.keys, 1);
    // Within the cooldown, another refresh does not fetch.
    keys.refresh(keys.generation()).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn redirects_to_other_hosts_are_refused_and_same_host_ones_followed() {
    let (port, _) = http_server(|path, port| match path {
        "/elsewhere" => redirect(format!("http://localhost:{port}/jwks")),
        "/here" => redirect(format!("http://127.0.0.1:{port}/jwks")),
        _ => ok(JWKS.as_bytes().to_vec(), ""),
    })
    .await;
    let away = remote(format!("http://127.0.0.1:{port}/elsewhere"));
    away.refresh(0).await;
    let status = away.status();
    assert!(!status.loaded);
    let err = status.last_error.unwrap();
    assert!(err.contains("redirect"), "{err}");
    let here = remote(format!("http://127.0.0.1:{port}/here"));
    here.refresh(0).await;
    assert!(here.status().loaded);
}

#[tokio::test]
async fn large_slow_or_failed_answers_keep_the_cached_keys() {
    let mode = Arc::new(AtomicUsize::new(0));
    let m = mode.clone();
    let (port, _) = http_server(move |_, _| match m.load(Ordering::SeqCst) {
        0 => ok(JWKS.as_bytes().to_vec(), "cache-control: max-age=0\r\n"),
        1 => ok(vec![b' '; MAX_DOCUMENT_BYTES + 1], ""),
        2 => None,
        _ => Some((
            "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
            Vec::new(),
        )),
    })
    .await;
    let mut s = settings();
    s.refetch_cooldown = Duration::from_millis(1);
    s.min_ttl = Duration::ZERO;
    let keys = RemoteKeys::new(
        "http://issuer.test",
        Some(format!("http://127.0.0.1:{port}/jwks")),
        vec![JwtAlg::EdDSA],
        s,
    )
    .unwrap();
    keys.refresh(0).await;
    assert_eq!(keys.status().keys, 1);
    for (m, want) in [(1, "larger than"), (2, "GET"), (3, "HTTP 500")] {
        mode.store(m, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        keys.refresh(keys.generation()).await;
        let status = keys.status();
        assert!(status.loaded, "{m}");
        assert_eq!(status.keys, 1, "{m}");
        let err = status.last_error.unwrap();
        assert!(err.contains(want), "{m}: {err}");
    }
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let (port, _) = http_server(|path, port| match path {
        "/.well-known/openid-configuration" => ok(
            format!(
                r#"{{"issuer":"http://127.0.0.1:{port}/other","jwks_uri":"http://127.0.0.1:{port}/jwks"}}"#
            )
            .into_bytes(),
            "",
        ),
        "/good/.well-known/openid-configuration" => ok(
            format!(
                r#"{{"issuer":"http://127.0.0.1:{port}/good","jwks_uri":"http://127.0.0.1:{port}/jwks"}}"#
            )
            .into_bytes(),
            "",
        ),
        _ => ok(JWKS.as_bytes().to_vec(), ""),
    })
    .await;
    let wrong = RemoteKeys::new(
        &format!("http://127.0.0.1:{port}"),
        None,
        vec![JwtAlg::EdDSA],
        settings(),
    )
    .unwrap();
    wrong.refresh(0).await;
    assert!(!wrong.status().loaded);
    assert!(wrong.status().last_error.unwrap().contains("names issuer"));
    let good = RemoteKeys::new(
        &format!("http://127.0.0.1:{port}/good"),
        None,
        vec![JwtAlg::EdDSA],
        settings(),
    )
    .unwrap();
    good.refresh(0).await;
    assert!(good.status().loaded);
}

#[test]
fn cache_control_gives_the_lifetime() {
    assert_eq!(
        parse_max_age("public, max-age=600"),
        Some(Duration::from_secs(600))
    );
    assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
    assert_eq!(parse_max_age("public"), None);
    assert_eq!(parse_max_age("max-age=abc"), None);
}
