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

use circulatory::consumer::{exactly_once, ConsumerGroup, Event, HandlerError};
use circulatory::events::{EventPayload, VideoEmbeddingGenerated, VideoPublished};
use circulatory_group_common::runner::Registered;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;
use circulatory_group_common::runner::NoOptions;

pub const GROUP: &str = "vector-embedding";

/// The longest embedding accepted: bounds the work and the row size.
pub const MAX_DIMENSIONS: usize = 4096;

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with(
            VideoEmbeddingGenerated::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { embedding_generated(&deps, e).await },
        )
        .handler_with(
            VideoPublished::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { video_published(&deps, e).await },
        ))
}

/// Checks an embedding: `dimensions` values, all finite. A non-finite float has no JSON form (it
/// arrives as `null`, which the payload refuses); a number beyond `f32` reads as infinite.
pub fn validate(dimensions: i32, vector: &[f32]) -> Result<(), HandlerError> {
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
    match vector.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(HandlerError::permanent(format!(
            "vector[{i}] is not a finite float"
        ))),
        None => Ok(()),
    }
}

/// The embedding of `event`, checked: what [`validate`] accepts, with a model name.
pub fn embedding(event: &Event) -> Result<VideoEmbeddingGenerated, HandlerError> {
    let p: VideoEmbeddingGenerated = event.payload()?;
    validate(p.dimensions, &p.vector)?;
    if p.model.trim().is_empty() {
        return Err(HandlerError::permanent("the model name is empty"));
    }
    Ok(p)
}

async fn embedding_generated(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p = embedding(&event)?;
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
            .bind(p.video_id.to_string())
            .bind(&p.model)
            .bind(p.author_id.to_string())
            .bind(p.dimensions)
            .bind(&p.vector)
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
            .bind(p.video_id.to_string())
            .bind(p.author_id.to_string())
            .bind(p.post_id.to_string())
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

    use circulatory::consumer::testing;
    use serde_json::json;

    #[test]
    fn embeddings_are_checked() {
        assert_eq!(validate(2, &[0.5, -1.0]), Ok(()));
        for (dimensions, vector) in [
            (3, vec![0.5, 1.0]),
            (0, vec![]),
            (-1, vec![1.0]),
            (5000, vec![0.0; 5000]),
            (1, vec![f32::NAN]),
            (2, vec![0.5, f32::INFINITY]),
        ] {
            let error = validate(dimensions, &vector).unwrap_err();
            assert!(!error.is_retryable(), "{dimensions} {vector:?}");
        }
        let error = validate(2, &[0.5, f32::NEG_INFINITY]).unwrap_err();
        assert!(error.to_string().contains("vector[1]"), "{error}");
    }

    fn generated(vector: serde_json::Value, model: &str) -> Event {
        testing::event(
            VideoEmbeddingGenerated::EVENT_TYPE,
            json!({
                "videoId": "0192e3a4-0000-7000-8000-000000000001",
                "authorId": "0192e3a4-0000-7000-8000-000000000002",
                "model": model, "dimensions": 2, "vector": vector,
                "generatedAt": "2026-11-27T10:00:00Z"
            }),
        )
    }

    #[test]
    fn an_embedding_is_read_from_its_event_and_checked() {
        let p = embedding(&generated(json!([0.25, -0.5]), "clip-v1")).expect("valid");
        assert_eq!(p.vector, vec![0.25, -0.5]);
        assert_eq!(
            p.video_id.to_string(),
            "0192e3a4-0000-7000-8000-000000000001"
        );
        assert_eq!(p.generated_at.timestamp(), 1_795_773_600);
        for (vector, model) in [
            // A non-finite value arrives as null; one beyond f32 reads as infinite.
            (json!([0.25, null]), "clip-v1"),
            (json!([0.25, 1e39]), "clip-v1"),
            (json!([0.25]), "clip-v1"),
            (json!([0.25, -0.5]), " "),
        ] {
            let error = embedding(&generated(vector.clone(), model)).unwrap_err();
            assert!(!error.is_retryable(), "{vector} {model:?}: {error}");
        }
        let mut bad_id = generated(json!([0.25, -0.5]), "clip-v1");
        bad_id.data["videoId"] = json!("not-a-uuid");
        assert!(!embedding(&bad_id).unwrap_err().is_retryable());
    }
}
