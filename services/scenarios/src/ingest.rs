//! The ingest API as a client sees it: `POST /v1/events`, `POST /v1/videos`, `/readyz`.
//!
//! Uploads are sent as a hand-built `multipart/form-data` body: the clip is small and held in
//! memory anyway, and the form is exactly the one the seed describes.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// A client of one ingest API with one bearer token.
#[derive(Debug, Clone)]
pub struct IngestClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// `GET /readyz` could not say yes.
#[derive(Debug)]
pub enum NotReady {
    /// Nothing answers at that address.
    Unreachable(String),
    /// It answered, but not 200.
    Status(u16, String),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Unreachable(why) => write!(f, "does not answer ({why})"),
            NotReady::Status(status, body) => write!(f, "is not ready ({status}: {})", body.trim()),
        }
    }
}

impl std::error::Error for NotReady {}

/// One video upload.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    pub clip: &'a [u8],
    pub filename: &'a str,
    pub content_type: &'a str,
    pub caption: &'a str,
    pub hashtags: &'a str,
    pub author_id: &'a str,
    pub correlation_id: &'a str,
}

/// The answer to an upload, with how long it took from sending the first byte to reading the
/// last one.
#[derive(Debug, Clone)]
pub struct UploadReply {
    pub status: u16,
    pub latency: Duration,
    pub body: Value,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
}

impl IngestClient {
    pub fn new(base_url: &str, token: &str) -> anyhow::Result<IngestClient> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .context("HTTP client")?;
        Ok(IngestClient {
            base: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /readyz`: Kafka, the registry and Redis reachable from the API. Also opens the
    /// connection later requests reuse, so the upload's latency is not a connection set-up.
    pub async fn ready(&self) -> Result<(), NotReady> {
        let response = self
            .http
            .get(format!("{}/readyz", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| NotReady::Unreachable(root_cause(&e)))?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(NotReady::Status(status, body))
    }

    /// Publishes a batch through `POST /v1/events` and returns the per-event answers (topic,
    /// partition, offset); anything but 202 is an error that quotes the problem document.
    pub async fn publish(&self, events: &[Value]) -> anyhow::Result<Vec<Value>> {
        let response = self
            .http
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(&self.token)
            .json(&Value::Array(events.to_vec()))
            .send()
            .await
            .with_context(|| format!("POST {}/v1/events", self.base))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 202 {
            bail!(
                "POST /v1/events answered {status}: {body}{}",
                token_hint(status)
            );
        }
        match body {
            Value::Array(items) => Ok(items),
            other => bail!("POST /v1/events answered 202 without a list: {other}"),
        }
    }

    /// `POST /v1/videos` with the clip and the form fields; any status is returned (the caller
    /// judges it), transport failures are errors.
    pub async fn upload(&self, upload: &Upload<'_>) -> anyhow::Result<UploadReply> {
        let boundary = format!("circ-{}", uuid::Uuid::new_v4().simple());
        let body = multipart_body(&boundary, upload);
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/v1/videos", self.base))
            .bearer_auth(&self.token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("x-correlation-id", upload.correlation_id)
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {}/v1/videos", self.base))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (correlation_id, request_id) = (header("x-correlation-id"), header("x-request-id"));
        let bytes = response
            .bytes()
            .await
            .context("reading the upload answer")?;
        let latency = started.elapsed();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(UploadReply {
            status,
            latency,
            body,
            correlation_id,
            request_id,
        })
    }
}

/// What a 401/403 most likely means for these tools.
pub fn token_hint(status: u16) -> &'static str {
    match status {
        401 => " (the token was refused: is it signed with the secret the ingest API runs with?)",
        403 => " (the token may not publish these event types)",
        _ => "",
    }
}

/// The form: text fields first, then the file part.
fn multipart_body(boundary: &str, upload: &Upload<'_>) -> Vec<u8> {
    let mut body = Vec::with_capacity(upload.clip.len() + 1024);
    for (name, value) in [
        ("caption", upload.caption),
        ("hashtags", upload.hashtags),
        ("authorId", upload.author_id),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"videoFile\"; \
             filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
            upload.filename, upload.content_type
        )
        .as_bytes(),
    );
    body.extend_from_slice(upload.clip);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// The innermost cause of an error: for a request, "Connection refused (os error 111)" rather
/// than the layers of client context around it.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    innermost.to_string()
}
