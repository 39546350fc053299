//! Request body size limit: bodies larger than `server.max_body_bytes` get 413 before any
//! handler runs, whether the size is announced by `Content-Length` or only discovered while
//! reading a chunked body.

use crate::error_code::ErrorCode;
use poem::http::StatusCode;
use poem::{Body, Endpoint, Middleware, Request};

use super::error::ApiError;

/// The body limit middleware.
pub struct BodyLimit(pub usize);

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        BodyLimitEndpoint {
            inner: ep,
            max: self.0,
        }
    }
}

/// The endpoint made by `BodyLimit`.
pub struct BodyLimitEndpoint<E> {
    inner: E,
    max: usize,
}

fn too_large(max: usize) -> poem::Error {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than {max} bytes (server.max_body_bytes)"),
    )
    .into()
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let announced = req
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match announced {
            Some(len) if len > self.max as u64 => return Err(too_large(self.max)),
            Some(_) => {}
            None => {
                use tokio::io::AsyncReadExt;
                let mut buf = Vec::new();
                let mut reader = req.take_body().into_async_read().take(self.max as u64 + 1);
                reader
                    .read_to_end(&mut buf)
                    .await
                    .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
                if buf.len() > self.max {
                    return Err(too_large(self.max));
                }
                req.set_body(Body::from(buf));
            }
        }
        self.inner.call(req).await
    }
}
