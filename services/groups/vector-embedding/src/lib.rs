//! `vector-embedding`: stores video embeddings and the videos that are live.
//!
//! - `video.embedding.generated` → `video_embeddings` (one row per video and model, the vector as
//!   `REAL[]`). The vector must have exactly `dimensions` finite values (at most
//!   [`MAX_DIMENSIONS`]); anything else is permanent. A newer generation of the same video and model
//!   replaces the stored one (`version` counts replacements); an older one, arriving late, is
//!   ignored.
//! - `video.published` → `recommendable_videos`: the video may be recommended. Together with an
//!   embedding it appears in the `recommendation_candidates` view; `vector-update` moves users'
//!   vectors towards the embeddings of the videos they watch.
//!
//! Both through `exactly_once`: a redelivered event changes nothing more.

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Event, HandlerError};
use circulatory_groups::runner::Registered;
use serde::Deserialize;

use circulatory_groups::deps::Deps;
use circulatory_groups::effects::db;
use circulatory_groups::runner::NoOptions;

pub const GROUP: &str = "vector-embedding";

/// The longest embedding accepted: bounds the work and the row size.
pub const MAX_DIMENSIONS: usize = 4096;

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with(
            "video.embedding.generated",
            deps.clone(),
            |deps, e, _| async move { embedding_generated(&deps, e).await },
        )
        .handler_with("video.published", deps.clone(), |deps, e, _| async move {
            video_published(&deps, e).await
        }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbeddingGenerated {
    video_id: String,
    author_id: String,
    model: String,
    dimensions: i32,
    /// A non-finite float has no JSON form: it arrives as `null`.
    vector: Vec<Option<f64>>,
    generated_at: DateTime<Utc>,
}

/// Checks an embedding: `dimensions` values, all finite and within `f32`; returns the vector.
pub fn validate(dimensions: i32, vector: &[Option<f64>]) -> Result<Vec<f32>, HandlerError> {
    let expected = usize::try_from(dimensions)
        .ok()
        .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
        .ok_or_else(|| {
            HandlerError::permanent(format!(
                "dimensions {dimensions} is not within 1..={MAX_DIMENSIONS}"
            ))
        })?;
    if vector.len() != expected {
        return Err(HandlerError::permanent(format!(
            "the vector has {} values, dimensions says {dimensions}",
            vector.len()
        )));
    }
    vector
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(v) if v.is_finite() && v.abs() <= f64::from(f32::MAX) => Ok(*v as f32),
            _ => Err(HandlerError::permanent(format!(
                "vector[{i}] is not a finite float"
            ))),
        })
        .collect()
}

async fn embedding_generated(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: EmbeddingGenerated = event.payload()?;
    let vector = validate(p.dimensions, &p.vector)?;
    if p.model.trim().is_empty() {
        return Err(HandlerError::permanent("the model name is empty"));
    }
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO video_embeddings (video_id, model, author_id, dimensions, vector, \
                                               generated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (video_id, model) DO UPDATE SET \
                     author_id = EXCLUDED.author_id, dimensions = EXCLUDED.dimensions, \
                     vector = EXCLUDED.vector, generated_at = EXCLUDED.generated_at, \
                     version = video_embeddings.version + 1, updated_at = now() \
                 WHERE video_embeddings.generated_at <= EXCLUDED.generated_at",
            )
            .bind(&p.video_id)
            .bind(&p.model)
            .bind(&p.author_id)
            .bind(p.dimensions)
            .bind(&vector)
            .bind(p.generated_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(())
        })
    })
    .await
    .map(drop)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoPublished {
    video_id: String,
    author_id: String,
    post_id: String,
    hashtags: Vec<String>,
    duration_ms: i64,
    published_at: DateTime<Utc>,
}

async fn video_published(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: VideoPublished = event.payload()?;
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO recommendable_videos (video_id, author_id, post_id, hashtags, \
                                                   duration_ms, published_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (video_id) DO UPDATE SET \
                     author_id = EXCLUDED.author_id, post_id = EXCLUDED.post_id, \
                     hashtags = EXCLUDED.hashtags, duration_ms = EXCLUDED.duration_ms, \
                     published_at = EXCLUDED.published_at \
                 WHERE recommendable_videos.published_at <= EXCLUDED.published_at",
            )
            .bind(&p.video_id)
            .bind(&p.author_id)
            .bind(&p.post_id)
            .bind(&p.hashtags)
            .bind(p.duration_ms)
            .bind(p.published_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(())
        })
    })
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_checked() {
        assert_eq!(
            validate(2, &[Some(0.5), Some(-1.0)]).unwrap(),
            vec![0.5, -1.0]
        );
        for (dimensions, vector) in [
            (3, vec![Some(0.5), Some(1.0)]),
            (0, vec![]),
            (-1, vec![Some(1.0)]),
            (2, vec![Some(0.5), None]),
            (1, vec![Some(f64::NAN)]),
            (1, vec![Some(1e39)]),
        ] {
            let error = validate(dimensions, &vector).unwrap_err();
            assert!(!error.is_retryable(), "{dimensions} {vector:?}");
        }
    }
}
