//! Webhook delivery of approval events.
//!
//! Each event is a JSON document POSTed to the configured URL with the header
//! `X-Keyward-Signature: sha256=<hex HMAC-SHA256 of the body under the shared secret>`.
//! Deliveries are retried with exponential backoff; a failing receiver never blocks or
//! changes the workflow (events are queued, and dropped with a log line when the queue is full).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use tokio::sync::mpsc;

use crate::store::Store;

const QUEUE: usize = 1024;
const ATTEMPTS: u32 = 6;

/// Queues events for the delivery task.
pub struct WebhookSender {
    tx: mpsc::Sender<(String, String)>,
}

impl WebhookSender {
    /// Starts the delivery task.
    pub fn start(store: Store, url: String, secret: zeroize::Zeroizing<Vec<u8>>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(store, url, secret, rx));
        WebhookSender { tx }
    }

    /// Queues an event about request `id` now in `status`.
    pub fn send(&self, id: &str, status: &str) {
        if self
            .tx
            .try_send((id.to_string(), status.to_string()))
            .is_err()
        {
            tracing::warn!(request = id, "webhook queue full; event dropped");
        }
    }
}

/// Signs a body: `sha256=<hex>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn deliver(
    store: Store,
    url: String,
    secret: zeroize::Zeroizing<Vec<u8>>,
    mut rx: mpsc::Receiver<(String, String)>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client cannot start");
            return;
        }
    };
    while let Some((id, status)) = rx.recv().await {
        let (at, _) = crate::clock::now();
        let request = store.approval_request(&id).await.ok().flatten();
        let votes = store.approval_votes(&id).await.unwrap_or_default();
        let event = json!({
            "event_id": uuid::Uuid::now_v7().to_string(),
            "type": format!("request.{status}"),
            "at": at,
            "request_id": id,
            "status": status,
            "key_id": request.as_ref().map(|r| r.key_id.clone()),
            "requester": request.as_ref().map(|r| json!({"issuer": r.issuer, "subject": r.subject})),
            "approvers": votes.iter().filter(|v| v.decision == "approve").map(|v| v.subject.clone()).collect::<Vec<_>>(),
            "rejected_by": votes.iter().filter(|v| v.decision == "reject").map(|v| v.subject.clone()).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let sig = signature(&secret, &body);
        let mut backoff = Duration::from_millis(250);
        for attempt in 1..=ATTEMPTS {
            let sent = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-keyward-signature", &sig)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => {
                    tracing::warn!(request = %id, attempt, status = %r.status(), "webhook refused the event")
                }
                Err(e) => {
                    tracing::warn!(request = %id, attempt, error = %e, "webhook delivery failed")
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(8));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let sig = super::signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
