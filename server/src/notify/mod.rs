//! Tells whoever waits that a request changed: long-polls of `GET /v1/requests/{id}` (a version
//! counter they watch) and the approval webhook (signed event delivery, in `webhook`). The
//! signing path and the approval workflow both report here; neither depends on the other for it.

mod webhook;

use tokio::sync::watch;

use crate::store::Store;

pub use webhook::signature as webhook_signature;

/// Notifies long-polls and the webhook of state changes.
pub struct ApprovalHub {
    version: watch::Sender<u64>,
    webhook: Option<webhook::WebhookSender>,
}

impl ApprovalHub {
    /// A hub; starts the webhook sender when one is configured.
    pub fn new(
        store: Store,
        url: Option<String>,
        secret: Option<zeroize::Zeroizing<Vec<u8>>>,
    ) -> Self {
        let (version, _) = watch::channel(0);
        let webhook = match (url, secret) {
            (Some(url), Some(secret)) => Some(webhook::WebhookSender::start(store, url, secret)),
            _ => None,
        };
        ApprovalHub { version, webhook }
    }

    /// Records that request `id` changed (to `status`).
    pub fn changed(&self, id: &str, status: &str) {
        self.version.send_modify(|v| *v += 1);
        if let Some(w) = &self.webhook {
            w.send(id, status);
        }
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}
