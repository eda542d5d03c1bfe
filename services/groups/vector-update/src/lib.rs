//! `vector-update`: users' preference vectors, moved by what they watch and the interest signals
//! about them, and the recommendation lists served to them.
//!
//! - `video.viewed` (signed-in viewer) and `user.interest` (about a video, `entityId`) move the
//!   user's vector towards the video's embedding (`video_embeddings`, written by
//!   `vector-embedding`), one vector per user and embedding model (`user_vectors`):
//!   `v ← v + rate · s · (e − v)`, an exponential moving average with `rate` from
//!   `--vector-learning-rate` and the signal strength `s` ∈ [−1, 1] ([`view_strength`]: the watched
//!   fraction, 1 when completed; [`interest_strength`]: the signal's weight, negative moving the
//!   vector away). A user's first positive signal in a model sets the vector to the embedding.
//!   Each change emits `user.vector.update` with the new vector.
//! - A view of a video without an embedding yet moves nothing: it is counted in
//!   `unembedded_video_views` (which videos most need an embedding). Interest signals about
//!   anything without an embedding (posts, topics only) are skipped.
//! - `recommendation.served` → a row of `recommendations_served`.
//!
//! Exactly once through `processed_events`: a redelivered view does not move the vector twice. When
//! the vector still holds a redelivered event's change, its `user.vector.update` is emitted again
//! with the same id and content (the first emission may have been lost in a crash).
//! topics.yaml gives this group a single attempt: failures go straight to its dead letters.

use chrono::{DateTime, Utc};
use circulatory::consumer::exactly_once::{exactly_once, Applied};
use circulatory::consumer::{ConsumerGroup, Context, Event, HandlerError};
use circulatory::events::{
    EventPayload, RecommendationServed, RecommendedVideo, UserInterest, UserVectorUpdate,
    VideoViewed,
};
use circulatory_group_common::runner::Registered;
use sqlx::PgConnection;
use uuid::Uuid;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;

pub const GROUP: &str = "vector-update";

/// Embedding models considered per video: bounds the work of one event.
const MAX_MODELS: i64 = 8;

/// The group's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How far one full-strength signal moves a user's vector towards (or away from) a video's
    /// embedding, in (0, 1].
    #[arg(
        long,
        env = "CIRC_VECTOR_LEARNING_RATE",
        default_value_t = 0.1,
        value_parser = learning_rate
    )]
    pub vector_learning_rate: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            vector_learning_rate: 0.1,
        }
    }
}

fn learning_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if rate > 0.0 && rate <= 1.0 {
        Ok(rate)
    } else {
        Err(format!("{rate} is not within (0, 1]"))
    }
}

pub fn register(consumer: ConsumerGroup, deps: &Deps, options: Options) -> Registered {
    let rate = options.vector_learning_rate;
    Ok(consumer
        .handler_with(
            VideoViewed::EVENT_TYPE,
            deps.clone(),
            move |deps, e, ctx| async move { video_viewed(&deps, rate, e, ctx).await },
        )
        .handler_with(
            UserInterest::EVENT_TYPE,
            deps.clone(),
            move |deps, e, ctx| async move { user_interest(&deps, rate, e, ctx).await },
        )
        .handler_with(
            RecommendationServed::EVENT_TYPE,
            deps.clone(),
            |deps, e, _| async move { recommendation_served(&deps, e).await },
        ))
}

/// Strength of a view: the fraction watched (1 when completed), within [0, 1].
pub fn view_strength(watch_time_ms: i64, video_duration_ms: i64, completed: bool) -> f64 {
    if completed {
        1.0
    } else if video_duration_ms > 0 {
        (watch_time_ms as f64 / video_duration_ms as f64).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Strength of an interest signal: its weight, within [−1, 1].
pub fn interest_strength(weight: f64) -> f64 {
    if weight.is_finite() {
        weight.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

/// One step of the moving average: `v + rate · (e − v)` (a negative rate moves away from `e`).
pub fn moved(current: &[f32], target: &[f32], rate: f64) -> Vec<f32> {
    current
        .iter()
        .zip(target)
        .map(|(v, e)| {
            let v = f64::from(*v);
            (v + rate * (f64::from(*e) - v)) as f32
        })
        .collect()
}

async fn video_viewed(
    deps: &Deps,
    rate: f64,
    event: Event,
    ctx: Context,
) -> Result<(), HandlerError> {
    let p: VideoViewed = event.payload()?;
    // A signed-out view has no user to learn about.
    let Some(user) = p.viewer_id else {
        return Ok(());
    };
    let signal = Signal {
        user,
        video: p.video_id,
        strength: view_strength(p.watch_time_ms, p.video_duration_ms, p.completed),
        count_unembedded: true,
        at: p.viewed_at,
    };
    signal.apply(deps, rate, &event, &ctx).await
}

async fn user_interest(
    deps: &Deps,
    rate: f64,
    event: Event,
    ctx: Context,
) -> Result<(), HandlerError> {
    let p: UserInterest = event.payload()?;
    let Some(entity) = p.entity_id else {
        return Ok(());
    };
    let signal = Signal {
        user: p.user_id,
        video: entity,
        strength: interest_strength(p.weight),
        count_unembedded: false,
        at: p.observed_at,
    };
    signal.apply(deps, rate, &event, &ctx).await
}

/// A signal of a user about a video.
struct Signal {
    user: Uuid,
    video: Uuid,
    strength: f64,
    /// Whether a missing embedding is counted in `unembedded_video_views` (views only).
    count_unembedded: bool,
    at: DateTime<Utc>,
}

/// A user's vector after a change, as `user.vector.update` carries it.
struct Updated {
    model: String,
    vector: Vec<f32>,
    updated_at: DateTime<Utc>,
}

impl Updated {
    /// The `user.vector.update` of `user` this change emits.
    fn event(self, user: Uuid) -> UserVectorUpdate {
        UserVectorUpdate {
            user_id: user,
            model: self.model,
            dimensions: self.vector.len() as i32,
            vector: self.vector,
            updated_at: self.updated_at,
        }
    }
}

impl Signal {
    async fn apply(
        self,
        deps: &Deps,
        rate: f64,
        event: &Event,
        ctx: &Context,
    ) -> Result<(), HandlerError> {
        let event_id = event.id().to_string();
        let user = self.user;
        let applied = exactly_once(&deps.pool, GROUP, event, move |tx| {
            Box::pin(async move { self.fold(tx, rate, &event_id).await })
        })
        .await?;
        let updates = match applied {
            Applied::Now(updates) => updates,
            Applied::AlreadyDone => last_change_of(deps, user, event.id()).await?,
        };
        for u in updates {
            ctx.emit(u.event(user));
        }
        Ok(())
    }

    /// Moves the user's vector of every model the video has an embedding in.
    async fn fold(
        self,
        tx: &mut PgConnection,
        rate: f64,
        event_id: &str,
    ) -> Result<Vec<Updated>, HandlerError> {
        let embeddings: Vec<(String, Vec<f32>)> = sqlx::query_as(
            "SELECT model, vector FROM video_embeddings WHERE video_id = $1 ORDER BY model \
             LIMIT $2",
        )
        .bind(self.video.to_string())
        .bind(MAX_MODELS)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        if embeddings.is_empty() {
            if self.count_unembedded {
                sqlx::query(
                    "INSERT INTO unembedded_video_views (video_id, views, last_viewed_at) \
                     VALUES ($1, 1, $2) \
                     ON CONFLICT (video_id) DO UPDATE SET \
                         views = unembedded_video_views.views + 1, \
                         last_viewed_at = GREATEST(unembedded_video_views.last_viewed_at, \
                                                   EXCLUDED.last_viewed_at)",
                )
                .bind(self.video.to_string())
                .bind(self.at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            return Ok(Vec::new());
        }
        if self.strength == 0.0 {
            return Ok(Vec::new());
        }
        // Avro timestamps carry milliseconds: store what user.vector.update says.
        let now =
            DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now);
        let mut updates = Vec::new();
        for (model, embedding) in embeddings {
            if let Some(vector) = self.fold_model(tx, rate, &model, &embedding).await? {
                sqlx::query(
                    "INSERT INTO user_vectors (user_id, model, dimensions, vector, signals, \
                                               last_event_id, updated_at) \
                     VALUES ($1, $2, $3, $4, 1, $5, $6) \
                     ON CONFLICT (user_id, model) DO UPDATE SET \
                         dimensions = EXCLUDED.dimensions, vector = EXCLUDED.vector, \
                         signals = user_vectors.signals + 1, \
                         last_event_id = EXCLUDED.last_event_id, updated_at = EXCLUDED.updated_at",
                )
                .bind(self.user.to_string())
                .bind(&model)
                .bind(vector.len() as i32)
                .bind(&vector)
                .bind(event_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                updates.push(Updated {
                    model,
                    vector,
                    updated_at: now,
                });
            }
        }
        Ok(updates)
    }

    /// The user's new vector in `model`, or `None` when it does not change.
    async fn fold_model(
        &self,
        tx: &mut PgConnection,
        rate: f64,
        model: &str,
        embedding: &[f32],
    ) -> Result<Option<Vec<f32>>, HandlerError> {
        // The row is locked so that concurrent signals of one user (views are keyed by video, so
        // they run in parallel) fold one after the other.
        let current: Option<(Vec<f32>,)> = sqlx::query_as(
            "SELECT vector FROM user_vectors WHERE user_id = $1 AND model = $2 FOR UPDATE",
        )
        .bind(self.user.to_string())
        .bind(model)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        Ok(match current {
            Some((current,)) if current.len() == embedding.len() => {
                Some(moved(&current, embedding, rate * self.strength))
            }
            // The first positive signal, or one after the model's dimension changed, starts the
            // vector at the embedding.
            _ if self.strength > 0.0 => Some(embedding.to_vec()),
            _ => None,
        })
    }
}

/// The vectors whose latest change came from `event_id` (a redelivery re-emits them).
async fn last_change_of(
    deps: &Deps,
    user: Uuid,
    event_id: &str,
) -> Result<Vec<Updated>, HandlerError> {
    let rows: Vec<(String, Vec<f32>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT model, vector, updated_at FROM user_vectors \
         WHERE user_id = $1 AND last_event_id = $2 ORDER BY model",
    )
    .bind(user.to_string())
    .bind(event_id)
    .fetch_all(&deps.pool)
    .await
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|(model, vector, updated_at)| Updated {
            model,
            vector,
            updated_at,
        })
        .collect())
}

/// The `items` column: `[{videoId, rank, score}]`, as the event lists them.
fn items_json(items: &[RecommendedVideo]) -> serde_json::Value {
    serde_json::to_value(items).expect("a generated record is JSON")
}

async fn recommendation_served(deps: &Deps, event: Event) -> Result<(), HandlerError> {
    let p: RecommendationServed = event.payload()?;
    let event_id = event.id().to_string();
    let items = items_json(&p.items);
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO recommendations_served (recommendation_id, event_id, user_id, \
                     surface, model, items, item_count, served_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(p.recommendation_id.to_string())
            .bind(&event_id)
            .bind(p.user_id.to_string())
            .bind(p.surface.as_str())
            .bind(&p.model)
            .bind(&items)
            .bind(p.items.len() as i32)
            .bind(p.served_at)
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
    fn strengths_are_bounded() {
        assert_eq!(view_strength(5_000, 10_000, false), 0.5);
        assert_eq!(view_strength(30_000, 10_000, false), 1.0);
        assert_eq!(view_strength(1_000, 10_000, true), 1.0);
        assert_eq!(view_strength(1_000, 0, false), 0.0);
        assert_eq!(interest_strength(-3.0), -1.0);
        assert_eq!(interest_strength(f64::NAN), 0.0);
    }

    #[test]
    fn the_average_moves_towards_or_away() {
        assert_eq!(moved(&[0.0, 1.0], &[1.0, 0.0], 0.25), vec![0.25, 0.75]);
        assert_eq!(moved(&[0.0, 1.0], &[1.0, 0.0], -0.25), vec![-0.25, 1.25]);
    }

    #[test]
    fn a_change_emits_the_whole_vector_of_its_user_and_model() {
        let at = DateTime::from_timestamp_millis(1_795_773_600_123).expect("in range");
        let user = Uuid::from_u128(7);
        let update = Updated {
            model: "clip-v1".into(),
            vector: vec![0.25, -0.5, 1.0],
            updated_at: at,
        }
        .event(user);
        assert_eq!(
            update,
            UserVectorUpdate {
                user_id: user,
                model: "clip-v1".into(),
                dimensions: 3,
                vector: vec![0.25, -0.5, 1.0],
                updated_at: at,
            }
        );
    }

    #[test]
    fn served_items_are_stored_in_the_event_s_json_form() {
        let items = [
            RecommendedVideo {
                video_id: Uuid::from_u128(1),
                rank: 0,
                score: 0.75,
            },
            RecommendedVideo {
                video_id: Uuid::from_u128(2),
                rank: 1,
                score: 0.5,
            },
        ];
        assert_eq!(
            items_json(&items),
            serde_json::json!([
                {"videoId": "00000000-0000-0000-0000-000000000001", "rank": 0, "score": 0.75},
                {"videoId": "00000000-0000-0000-0000-000000000002", "rank": 1, "score": 0.5}
            ])
        );
    }
}
