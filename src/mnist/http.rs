//! The mnist app behind the HTTP front (rule R2): `POST /` with a
//! multipart field `images` holding a JPEG or PNG answers
//! `{"mnist_result": <digit>}`.
//!
//! Owns: the routes, reading the upload (multipart, size limit) once its
//! size fits in the `--upload-memory` budget, the admission of its decode
//! (the header probed against `--max-pixels`, its memory against the
//! `--decode-memory` budget) and the hand-off to the `compute` threads. Must not: block the reactor, decode pixels (the
//! compute threads do), or let one bad upload affect another request.

use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use http_body_util::BodyStream;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use modelarts_init::http::{content_length, json, App, Body};
use modelarts_init::imaging::decode::{self, Limits};

use crate::budget::Budget;
use crate::compute::Compute;
use crate::errors::{LogLimit, Refusal};

/// The multipart field that carries the image (R2's `-F images=@...`).
pub const FIELD: &str = "images";

/// Room for the other fields and the multipart framing.
const FRAMING: u64 = 64 * 1024;

/// The mnist app.
pub struct Mnist {
    /// Set once the model is loaded; requests are served from then on.
    compute: OnceLock<Compute>,
    max_image_bytes: u64,
    limits: Limits,
    /// The decodes' memory (`--decode-memory`, `limits.max_memory`).
    budget: Budget,
    /// The uploads' memory (`--upload-memory`).
    uploads: Budget,
    log: LogLimit,
}

impl Mnist {
    /// The app; `limits.max_memory` is also the decode budget, and
    /// `upload_memory` the uploads' budget.
    pub fn new(max_image_bytes: u64, limits: Limits, upload_memory: u64) -> Mnist {
        Mnist {
            compute: OnceLock::new(),
            max_image_bytes,
            limits,
            budget: Budget::new(limits.max_memory),
            uploads: Budget::new(upload_memory),
            log: LogLimit::default(),
        }
    }

    /// Serves requests on `compute` from now on.
    pub fn set_compute(&self, compute: Compute) {
        let _ = self.compute.set(compute);
    }

    /// The answer to one upload's bytes.
    pub async fn answer(&self, image: Bytes, peer: SocketAddr) -> Response<Body> {
        match self.classify(image).await {
            Ok(digit) => json(
                StatusCode::OK,
                &serde_json::json!({ "mnist_result": digit }),
            ),
            Err(refusal) => refusal.answer(peer, &self.log),
        }
    }

    async fn classify(&self, image: Bytes) -> Result<u8, Refusal> {
        let compute = self.compute.get().ok_or(Refusal::NotReady)?;
        let header = decode::probe(&image, &self.limits)?;
        let admission =
            self.budget
                .admit(header.memory)
                .await
                .ok_or_else(|| Refusal::Internal {
                    cause: "the decode budget is closed".into(),
                })?;
        let result = compute
            .classify(image, header, admission)
            .await
            .map_err(|e| Refusal::Internal {
                cause: e.to_string(),
            })?;
        Ok(result?)
    }

    /// Reads the `images` field, up to `max_image_bytes`.
    async fn read_upload(&self, req: Request<Incoming>) -> Result<Bytes, Refusal> {
        let boundary = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| multer::parse_boundary(v).ok())
            .ok_or(Refusal::NotMultipart)?;
        let max = self.max_image_bytes;
        // One buffer of the declared size: no doubling as chunks arrive.
        let capacity = content_length(&req).unwrap_or(0).min(max) as usize;
        let constraints = multer::Constraints::new().size_limit(
            multer::SizeLimit::new()
                .per_field(max)
                .whole_stream(max.saturating_add(FRAMING)),
        );
        let stream = BodyStream::new(req.into_body())
            .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) });
        let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
        let refused = |e: multer::Error| match e {
            multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
                Refusal::TooLarge(max)
            }
            other => Refusal::Malformed(other.to_string()),
        };
        while let Some(mut field) = form.next_field().await.map_err(refused)? {
            if field.name() != Some(FIELD) {
                continue;
            }
            let mut bytes = BytesMut::with_capacity(capacity);
            while let Some(chunk) = field.chunk().await.map_err(refused)? {
                bytes.extend_from_slice(&chunk);
            }
            if bytes.is_empty() {
                return Err(Refusal::Empty);
            }
            return Ok(bytes.freeze());
        }
        Err(Refusal::NoImage)
    }
}

impl App for Mnist {
    async fn call(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if req.uri().path() != "/" {
            return Refusal::NotFound.answer(peer, &self.log);
        }
        if req.method() != Method::POST {
            return Refusal::MethodNotAllowed.answer(peer, &self.log);
        }
        // The body is read once its size fits (hyper never delivers more
        // than the Content-Length); the room is held until the answer.
        let most = self.max_image_bytes.saturating_add(FRAMING);
        let size = content_length(&req).map_or(most, |n| n.min(most));
        let Some(_held) = self.uploads.admit(size).await else {
            let cause = "the upload budget is closed".into();
            return Refusal::Internal { cause }.answer(peer, &self.log);
        };
        match self.read_upload(req).await {
            Ok(image) => self.answer(image, peer).await,
            Err(refusal) => refusal.answer(peer, &self.log),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt;

    use super::*;
    use crate::model::{Input, Predict, RunError};

    /// A model whose every run fails, as tract would on a broken plan.
    struct FailingModel;

    impl Predict for FailingModel {
        fn predict(&self, _: &Input) -> Result<u8, RunError> {
            Err(RunError("injected failure".into()))
        }
    }

    /// A model that panics.
    struct PanickingModel;

    impl Predict for PanickingModel {
        fn predict(&self, _: &Input) -> Result<u8, RunError> {
            panic!("injected panic")
        }
    }

    fn seven() -> Bytes {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images/seven.jpg");
        Bytes::from(std::fs::read(path).unwrap())
    }

    async fn answer_with(model: Arc<dyn Predict>, image: Bytes) -> (StatusCode, serde_json::Value) {
        let app = Mnist::new(10 << 20, Limits::default(), 64 << 20);
        app.set_compute(Compute::start(model, 1, 19).unwrap());
        let resp = app.answer(image, "127.0.0.1:9".parse().unwrap()).await;
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_tract_failure_answers_500() {
        let (status, body) = answer_with(Arc::new(FailingModel), seven()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(body["error"], "internal");
        assert!(
            !body["message"].as_str().unwrap().contains("injected"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_panic_answers_500_and_the_thread_serves_on() {
        let app = Mnist::new(10 << 20, Limits::default(), 64 << 20);
        app.set_compute(Compute::start(Arc::new(PanickingModel), 1, 19).unwrap());
        let peer = "127.0.0.1:9".parse().unwrap();
        for _ in 0..2 {
            let resp = app.answer(seven(), peer).await;
            assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        }
    }

    #[tokio::test]
    async fn a_bad_image_is_the_clients_fault_even_with_a_failing_model() {
        let (status, body) =
            answer_with(Arc::new(FailingModel), Bytes::from_static(b"GIF89a....")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    }
}
