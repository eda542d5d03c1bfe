//! `POST /v1/videos`: the seed's upload flow. The file is streamed into the object store (never
//! held whole in memory), then `video.uploaded` is produced and the client gets `202` with the
//! video id while transcoding happens asynchronously.

use std::time::Instant;

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{SecondsFormat, Utc};
use circulatory::auth::Claims;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use serde::Serialize;
use serde_json::json;

use crate::body::{refuse_announced, within};
use crate::correlation::{respond, Correlation};
use crate::problem::{code, ApiError, EventProblem};
use crate::state::AppState;

/// Longest caption (the seed's limit).
pub const MAX_CAPTION_CHARS: usize = 5000;
/// Most hashtags and mentions per video.
const MAX_TAGS: usize = 64;
/// Longest hashtag.
const MAX_HASHTAG_CHARS: usize = 100;
/// Largest non-file form field.
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Chunk size of the multipart upload to the object store.
const UPLOAD_CHUNK_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadAccepted {
    pub video_id: String,
    pub status: &'static str,
    pub message: &'static str,
}

/// Upload a video (multipart: `videoFile`, `caption`, `hashtags`, `mentions`, `authorId`).
#[utoipa::path(
    post,
    path = "/v1/videos",
    tag = "videos",
    request_body(content_type = "multipart/form-data", description = "videoFile (video/*), caption (≤ 5000 chars), hashtags (`#a #b` or `a,b`), mentions (user ids), authorId (uuid)"),
    responses(
        (status = 202, description = "Stored and queued for processing", body = UploadAccepted),
        (status = 400, description = "Malformed form", body = crate::problem::Problem),
        (status = 401, description = "No or invalid token", body = crate::problem::Problem),
        (status = 403, description = "Not allowed to publish video.uploaded", body = crate::problem::Problem),
        (status = 413, description = "File too large", body = crate::problem::Problem),
        (status = 415, description = "Not a video", body = crate::problem::Problem),
        (status = 422, description = "Invalid fields", body = crate::problem::Problem),
        (status = 503, description = "Storage or Kafka unavailable", body = crate::problem::Problem),
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    State(state): State<AppState>,
    Extension(correlation): Extension<Correlation>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let result = async {
        let claims = state.authenticate(&headers)?;
        let event = state
            .catalog
            .event("video.uploaded")
            .ok_or_else(|| ApiError::Internal("video.uploaded is not in the catalog".into()))?;
        if !claims.may_publish(event.name(), &event.route.domain) {
            return Err(ApiError::Forbidden(format!(
                "client `{}` may not upload videos",
                claims.sub
            )));
        }
        let announced = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        refuse_announced(announced, upload_body_limit(state.limits.max_upload_bytes))?;
        let multipart = multipart.map_err(|e| match e.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::UnsupportedMediaType("uploads are multipart/form-data".into())
            }
            _ => ApiError::Malformed(e.body_text()),
        })?;
        state.rate_limit(&claims.sub, 1)?;
        if !state.health.kafka_up() {
            return Err(ApiError::unavailable(
                "the event log is unavailable; retry later",
                code::KAFKA_UNAVAILABLE,
                "kafka unreachable (health watcher)",
            ));
        }
        accept(&state, &correlation, &claims, multipart).await
    }
    .await;
    respond(result, &correlation)
}

/// The largest upload body: the video plus room for the form's other fields.
pub fn upload_body_limit(max_upload_bytes: u64) -> u64 {
    max_upload_bytes.saturating_add(1024 * 1024)
}

struct Form {
    video_id: uuid::Uuid,
    object_key: Option<ObjectPath>,
    filename: String,
    content_type: String,
    size: u64,
    caption: Option<String>,
    hashtags: Vec<String>,
    mentions: Vec<String>,
    author_id: Option<String>,
}

async fn accept(
    state: &AppState,
    correlation: &Correlation,
    claims: &Claims,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut form = Form {
        video_id: uuid::Uuid::now_v7(),
        object_key: None,
        filename: String::new(),
        content_type: String::new(),
        size: 0,
        caption: None,
        hashtags: Vec::new(),
        mentions: Vec::new(),
        author_id: None,
    };
    let outcome = read_form(state, &mut multipart, &mut form)
        .await
        .and_then(|()| {
            form.author_id = Some(author(claims, form.author_id.as_deref())?);
            Ok(())
        });
    let outcome = match outcome {
        Ok(()) => produce(state, correlation, &form).await,
        Err(e) => Err(e),
    };
    if outcome.is_err() {
        // Nothing refers to the object yet: do not leave it behind.
        if let Some(key) = &form.object_key {
            let _ = state.objects.delete(key).await;
        }
    }
    outcome?;
    tracing::info!(
        video_id = %form.video_id,
        bytes = form.size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "video accepted"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadAccepted {
            video_id: form.video_id.to_string(),
            status: "PROCESSING",
            message: "Video queued for processing",
        }),
    )
        .into_response())
}

fn field_problem(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(
        "the upload form is invalid",
        code::SCHEMA_VIOLATION,
        vec![EventProblem {
            index: 0,
            path: format!("/{field}"),
            message: message.into(),
        }],
    )
}

async fn read_form(
    state: &AppState,
    multipart: &mut Multipart,
    form: &mut Form,
) -> Result<(), ApiError> {
    let malformed =
        |e: axum::extract::multipart::MultipartError| ApiError::Malformed(e.body_text());
    let stall = state.limits.body_timeout;
    while let Some(mut field) = within(stall, multipart.next_field())
        .await?
        .map_err(malformed)?
    {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "videoFile" | "file" => {
                if form.object_key.is_some() {
                    return Err(field_problem("videoFile", "only one file per upload"));
                }
                let content_type = field.content_type().unwrap_or("").to_ascii_lowercase();
                if !content_type.starts_with("video/") {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "the file must be a video (video/*), not `{}`",
                        if content_type.is_empty() {
                            "unspecified"
                        } else {
                            &content_type
                        }
                    )));
                }
                let filename = field.file_name().unwrap_or("video").to_string();
                let extension = std::path::Path::new(&filename)
                    .extension()
                    .and_then(|e| e.to_str())
                    .filter(|e| e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()))
                    .map(|e| format!(".{}", e.to_ascii_lowercase()))
                    .unwrap_or_default();
                let key = ObjectPath::from(format!("videos/{}/original{extension}", form.video_id));
                form.object_key = Some(key.clone());
                form.filename = filename.chars().take(255).collect();
                form.content_type = content_type;
                let upload = state.objects.put_multipart(&key).await.map_err(|e| {
                    ApiError::unavailable(
                        "video storage is unavailable; retry later",
                        code::STORAGE_UNAVAILABLE,
                        e,
                    )
                })?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK_BYTES);
                loop {
                    let chunk = match within(stall, field.chunk()).await? {
                        Ok(Some(chunk)) => chunk,
                        Ok(None) => break,
                        Err(e) => {
                            writer.abort().await.ok();
                            return Err(malformed(e));
                        }
                    };
                    form.size += chunk.len() as u64;
                    if form.size > state.limits.max_upload_bytes {
                        writer.abort().await.ok();
                        return Err(ApiError::TooLarge(format!(
                            "the video exceeds {} bytes",
                            state.limits.max_upload_bytes
                        )));
                    }
                    // Bounded memory: waits while too many chunks are still being written.
                    writer.wait_for_capacity(2).await.map_err(|e| {
                        ApiError::unavailable(
                            "video storage is unavailable; retry later",
                            code::STORAGE_UNAVAILABLE,
                            e,
                        )
                    })?;
                    writer.write(&chunk);
                }
                if form.size == 0 {
                    writer.abort().await.ok();
                    return Err(field_problem("videoFile", "the file is empty"));
                }
                writer.finish().await.map_err(|e| {
                    ApiError::unavailable(
                        "video storage is unavailable; retry later",
                        code::STORAGE_UNAVAILABLE,
                        e,
                    )
                })?;
                state.metrics.uploads_bytes.inc_by(form.size);
            }
            "caption" | "hashtags" | "mentions" | "authorId" => {
                let text = within(stall, read_text(&mut field)).await??;
                match name.as_str() {
                    "caption" => {
                        if text.chars().count() > MAX_CAPTION_CHARS {
                            return Err(field_problem(
                                "caption",
                                format!("at most {MAX_CAPTION_CHARS} characters"),
                            ));
                        }
                        form.caption = Some(text).filter(|t| !t.is_empty());
                    }
                    "hashtags" => form.hashtags.extend(split_tags(&text, '#')),
                    "mentions" => form.mentions.extend(split_tags(&text, '@')),
                    _ => form.author_id = Some(text.trim().to_string()),
                }
            }
            other => return Err(field_problem(other, "unknown form field")),
        }
    }
    if form.object_key.is_none() {
        return Err(field_problem("videoFile", "missing file"));
    }
    if form.hashtags.len() > MAX_TAGS
        || form
            .hashtags
            .iter()
            .any(|h| h.chars().count() > MAX_HASHTAG_CHARS)
    {
        return Err(field_problem(
            "hashtags",
            format!("at most {MAX_TAGS} hashtags of {MAX_HASHTAG_CHARS} characters"),
        ));
    }
    if form.mentions.len() > MAX_TAGS {
        return Err(field_problem(
            "mentions",
            format!("at most {MAX_TAGS} mentions"),
        ));
    }
    Ok(())
}

async fn read_text(field: &mut axum::extract::multipart::Field<'_>) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::Malformed(e.body_text()))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_FIELD_BYTES {
            return Err(ApiError::TooLarge(format!(
                "a form field exceeds {MAX_FIELD_BYTES} bytes"
            )));
        }
    }
    String::from_utf8(bytes).map_err(|_| ApiError::Malformed("form fields must be UTF-8".into()))
}

/// Who the upload is attributed to. A token acts as its own `sub` (a user's token carries the
/// user's id), so naming another `authorId` is refused unless the token's `on_behalf` claim says
/// its client may act for other users (a trusted backend); such a client names the author.
fn author(claims: &Claims, named: Option<&str>) -> Result<String, ApiError> {
    match named.filter(|n| !n.is_empty()) {
        Some(named) if named != claims.sub && !claims.on_behalf => Err(ApiError::Forbidden(format!(
            "`{}` may upload only as itself; naming another authorId needs a token with the on_behalf claim",
            claims.sub
        ))),
        Some(named) => Ok(named.to_string()),
        None => Ok(claims.sub.clone()),
    }
}

/// `#travel #sunset`, `travel, sunset` → `[travel, sunset]`.
fn split_tags(text: &str, sigil: char) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .map(|t| t.trim_start_matches(sigil))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

async fn produce(state: &AppState, correlation: &Correlation, form: &Form) -> Result<(), ApiError> {
    let object_key = form
        .object_key
        .as_ref()
        .map(|k| k.to_string())
        .unwrap_or_default();
    let data = json!({
        "videoId": form.video_id.to_string(),
        "authorId": form.author_id.clone().unwrap_or_default(),
        "objectKey": object_key,
        "originalFilename": form.filename,
        "contentType": form.content_type,
        "sizeBytes": form.size,
        "caption": form.caption,
        "hashtags": form.hashtags,
        "mentions": form.mentions,
        "uploadedAt": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    let draft = circulatory::publisher::EventDraft {
        event_type: "video.uploaded".into(),
        data,
        subject: Some(format!("videos/{}", form.video_id)),
        correlation_id: Some(correlation.correlation_id.clone()),
        request_id: Some(correlation.request_id.clone()),
        traceparent: Some(correlation.traceparent.clone()),
        tracestate: correlation.tracestate.clone(),
        ..Default::default()
    };
    let validated = state.publisher.validate(draft).map_err(|e| match e {
        circulatory::publisher::ValidationError::Schema { errors, .. } => ApiError::unprocessable(
            "the upload form is invalid",
            code::SCHEMA_VIOLATION,
            errors
                .into_iter()
                .map(|e| EventProblem {
                    index: 0,
                    path: e.path,
                    message: e.message,
                })
                .collect(),
        ),
        other => ApiError::Internal(other.to_string()),
    })?;
    state
        .publisher
        .publish(validated)
        .await
        .map_err(crate::events::publish_error)?;
    state
        .metrics
        .events_produced
        .with_label_values(&["video.uploaded"])
        .inc();
    state.published.add("video.uploaded", 1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_split_and_unprefixed() {
        assert_eq!(
            split_tags("#travel #sunset,#egypt", '#'),
            ["travel", "sunset", "egypt"]
        );
        assert_eq!(split_tags(" a, b ", '#'), ["a", "b"]);
        assert!(split_tags("", '@').is_empty());
    }

    #[test]
    fn a_user_uploads_as_itself_and_only_a_delegate_names_another_author() {
        let user = "5b1f3c1e-2a4b-4c6d-8e9f-0a1b2c3d4e5f";
        let other = "0b0c3f0e-8e4c-4a57-9a51-1f2d7f8f5a10";
        let mut claims = circulatory::auth::claims_for(user, std::time::Duration::from_secs(60));
        assert_eq!(author(&claims, None).unwrap(), user);
        assert_eq!(author(&claims, Some(user)).unwrap(), user);
        assert!(matches!(
            author(&claims, Some(other)),
            Err(ApiError::Forbidden(_))
        ));
        claims.on_behalf = true;
        assert_eq!(author(&claims, Some(other)).unwrap(), other);
    }
}
