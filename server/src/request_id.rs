//! The id of the request being served: set once per HTTP request (or per call of a JSON-RPC
//! batch) by the server shell, read by whatever records the request (audit records, error
//! bodies). Domain code that has a `SignCall` uses the id it carries.

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served (empty outside a request).
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// A fresh request id.
pub fn fresh() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Runs `work` as a request of its own, with the id `id` (e.g. one call of a JSON-RPC batch:
/// each call is its own sign request, with its own id, result and audit record).
pub async fn scope<F: std::future::Future>(id: String, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}
