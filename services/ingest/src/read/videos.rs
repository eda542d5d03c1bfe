//! `GET /v1/videos/{id}`: a video as the media groups projected it into `videos` (transcoder:
//! upload and probe; video-publisher: renditions, thumbnail, publication or failure).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{database, db_error, path_id};
use crate::correlation::{respond, Correlation};
use crate::problem::ApiError;
use crate::state::AppState;

/// A video and its processing state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Video {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    /// UPLOADED (stored, not probed or not a usable video), PROCESSING (renditions and thumbnail
    /// under way), PUBLISHED, or FAILED (see `failure`).
    pub status: String,
    #[schema(value_type = String, format = "uuid")]
    pub author_id: Uuid,
    /// The post presenting the video in feeds.
    #[schema(value_type = String, format = "uuid")]
    pub post_id: Uuid,
    /// The uploader's caption.
    pub caption: Option<String>,
    /// Hashtags, without the leading `#`.
    pub hashtags: Vec<String>,
    /// `null` until the source is probed (and for a source that is not a usable video).
    pub duration_ms: Option<i64>,
    /// Display width in pixels (rotation applied); `null` until probed.
    pub width: Option<i32>,
    pub height: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// HLS renditions, highest quality first; empty until transcoded.
    pub renditions: Vec<Rendition>,
    /// The HLS master playlist; `null` until transcoded.
    pub master_playlist_url: Option<String>,
    pub thumbnail: Option<Thumbnail>,
    pub published_at: Option<DateTime<Utc>>,
    pub failure: Option<Failure>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One HLS rendition.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rendition {
    /// Label, e.g. `720p`.
    pub name: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// Target video bitrate in bits per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<i64>,
    /// The rendition's HLS media playlist.
    pub url: String,
}

/// The video's composite thumbnail.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Thumbnail {
    pub url: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
}

/// Why processing failed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Failure {
    /// A `TranscodeErrorKind` symbol.
    pub kind: Option<String>,
    pub reason: Option<String>,
}

/// The stored form of a rendition (`videos.renditions`, from `video.transcode.completed`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRendition {
    name: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    bitrate_kbps: Option<i64>,
    playlist_url: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: Uuid,
    author_id: Uuid,
    post_id: Uuid,
    status: String,
    caption: Option<String>,
    hashtags: Vec<String>,
    duration_ms: Option<i64>,
    width: Option<i32>,
    height: Option<i32>,
    fps: Option<f64>,
    renditions: Option<String>,
    master_playlist_url: Option<String>,
    thumbnail_url: Option<String>,
    thumbnail_width: Option<i32>,
    thumbnail_height: Option<i32>,
    published_at: Option<DateTime<Utc>>,
    failure_kind: Option<String>,
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Row> for Video {
    fn from(row: Row) -> Video {
        Video {
            id: row.id,
            status: row.status,
            author_id: row.author_id,
            post_id: row.post_id,
            caption: row.caption,
            hashtags: row.hashtags,
            duration_ms: row.duration_ms,
            width: row.width,
            height: row.height,
            fps: row.fps,
            renditions: row
                .renditions
                .as_deref()
                .map(renditions)
                .unwrap_or_default(),
            master_playlist_url: row.master_playlist_url,
            thumbnail: row.thumbnail_url.map(|url| Thumbnail {
                url,
                width: row.thumbnail_width,
                height: row.thumbnail_height,
            }),
            published_at: row.published_at,
            failure: (row.failure_kind.is_some() || row.failure_reason.is_some()).then_some(
                Failure {
                    kind: row.failure_kind,
                    reason: row.failure_reason,
                },
            ),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The renditions of the stored JSON; entries without a name or playlist are skipped.
fn renditions(json: &str) -> Vec<Rendition> {
    let stored: Vec<StoredRendition> = serde_json::from_str(json).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "unreadable renditions in videos");
        Vec::new()
    });
    stored
        .into_iter()
        .filter_map(|r| {
            Some(Rendition {
                name: r.name?,
                width: r.width,
                height: r.height,
                bandwidth: r.bitrate_kbps.map(|kbps| kbps.saturating_mul(1000)),
                url: r.playlist_url?,
            })
        })
        .collect()
}

/// A video: its processing status, renditions, thumbnail, publication or failure. Any
/// authenticated user may read any video.
#[utoipa::path(
    get,
    path = "/v1/videos/{id}",
    tag = "videos",
    params(("id" = String, Path, description = "The video id (UUID)")),
    responses(
        (status = 200, description = "The video", body = Video),
        (status = 400, description = "The id is not a UUID", body = crate::problem::Problem),
        (status = 401, description = "No or invalid token", body = crate::problem::Problem),
        (status = 404, description = "No such video", body = crate::problem::Problem),
        (status = 503, description = "PostgreSQL unavailable (Retry-After)", body = crate::problem::Problem),
    ),
    security(("bearer" = []))
)]
pub async fn video(
    State(state): State<AppState>,
    Extension(correlation): Extension<Correlation>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        state.bearer(&headers)?;
        let id = path_id(id)?;
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, author_id, post_id, status, caption, hashtags, duration_ms, width, height, \
                    fps, renditions::text AS renditions, master_playlist_url, thumbnail_url, \
                    thumbnail_width, thumbnail_height, published_at, failure_kind, \
                    failure_reason, created_at, updated_at \
             FROM videos WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(database(&state)?)
        .await
        .map_err(db_error)?;
        let row = row.ok_or_else(|| ApiError::NotFound(format!("no video {id}")))?;
        Ok(Json(Video::from(row)))
    }
    .await;
    respond(result, &correlation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_renditions_map_to_urls_and_bandwidth() {
        let json = r#"[
            {"name": "720p", "width": 1280, "height": 720, "bitrateKbps": 2800, "playlistUrl": "https://cdn/v/720p.m3u8"},
            {"name": "360p", "width": 640, "height": 360, "playlistUrl": "https://cdn/v/360p.m3u8"},
            {"width": 1, "height": 1}
        ]"#;
        let r = renditions(json);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "720p");
        assert_eq!(r[0].bandwidth, Some(2_800_000));
        assert_eq!(r[0].url, "https://cdn/v/720p.m3u8");
        assert_eq!(r[1].bandwidth, None);
        assert!(renditions("{}").is_empty());
    }
}
