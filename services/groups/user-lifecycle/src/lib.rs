//! `user-lifecycle`: projects the users domain into PostgreSQL.
//!
//! - `user.created` → a `user_profiles` row and a `user_settings` row with defaults, and a welcome
//!   `notification.created` for the new user.
//! - `user.verified` → the verification kinds on the profile.
//! - `user.followed` / `user.unfollowed` → the `user_follows` graph and the profiles' follower and
//!   following counts.
//! - `user.blocked` → `user_blocks`; the block ends any follow between the two users.
//!
//! Follow state is last-writer-wins by event time: follows and unfollows of one pair can arrive
//! out of order (a retried event runs after newer ones), so a change applies only when its event
//! is newer than the pair's `changed_at`, and the counts move only when `active` flips. Every
//! effect runs through `exactly_once`, so a redelivered event changes nothing more.

use chrono::{DateTime, Utc};
use circulatory::consumer::{exactly_once, ConsumerGroup, Context, Event, HandlerError};
use circulatory::events::{
    EventPayload, NotificationChannel, NotificationCreated, NotificationKind, UserBlocked,
    UserCreated, UserFollowed, UserUnfollowed, UserVerified,
};
use circulatory_group_common::runner::Registered;
use sqlx::PgConnection;
use uuid::Uuid;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::db;
use circulatory_group_common::runner::NoOptions;

pub const GROUP: &str = "user-lifecycle";

pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    Ok(consumer
        .handler_with(UserCreated::EVENT_TYPE, deps.clone(), user_created)
        .handler_with(UserVerified::EVENT_TYPE, deps.clone(), user_verified)
        .handler_with(UserFollowed::EVENT_TYPE, deps.clone(), user_followed)
        .handler_with(UserUnfollowed::EVENT_TYPE, deps.clone(), user_unfollowed)
        .handler_with(UserBlocked::EVENT_TYPE, deps.clone(), user_blocked))
}

/// Id of a user's welcome notification: derived from the user, so every delivery of the user's
/// `user.created` (even under another event id) asks for the same notification.
pub fn welcome_notification_id(user_id: Uuid) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("circulatory/notification/welcome/{user_id}").as_bytes(),
    )
}

/// The welcome `notification.created` of a new user: in the app, and by email to users who
/// signed up with an address.
fn welcome(p: &UserCreated) -> NotificationCreated {
    let channels = if p.email.is_some() {
        vec![NotificationChannel::InApp, NotificationChannel::Email]
    } else {
        vec![NotificationChannel::InApp]
    };
    NotificationCreated {
        notification_id: welcome_notification_id(p.user_id),
        user_id: p.user_id,
        kind: NotificationKind::System,
        title: "Welcome to D-A-I-R-A!".into(),
        body: format!(
            "Hi {}, your account is ready. Follow creators to fill your feed.",
            p.display_name
        ),
        actor_id: None,
        entity_id: None,
        channels,
        created_at: p.created_at,
    }
}

async fn user_created(deps: Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: UserCreated = event.payload()?;
    if p.username.trim().is_empty() {
        return Err(HandlerError::permanent(
            "user.created with an empty username",
        ));
    }
    let welcome = welcome(&p);
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            // A row made earlier by a follow or a verification gets its identity now; a second
            // user.created for the same user (another event id) changes nothing.
            sqlx::query(
                "INSERT INTO user_profiles (user_id, username, display_name, email, phone_number, \
                                            signup_method, locale, country_code, referrer_id, \
                                            created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (user_id) DO UPDATE \
                   SET username = EXCLUDED.username, display_name = EXCLUDED.display_name, \
                       email = EXCLUDED.email, phone_number = EXCLUDED.phone_number, \
                       signup_method = EXCLUDED.signup_method, locale = EXCLUDED.locale, \
                       country_code = EXCLUDED.country_code, referrer_id = EXCLUDED.referrer_id, \
                       created_at = EXCLUDED.created_at, updated_at = now() \
                 WHERE user_profiles.created_at IS NULL",
            )
            .bind(p.user_id)
            .bind(&p.username)
            .bind(&p.display_name)
            .bind(&p.email)
            .bind(&p.phone_number)
            .bind(p.signup_method.as_str())
            .bind(&p.locale)
            .bind(&p.country_code)
            .bind(p.referrer_id)
            .bind(p.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            sqlx::query(
                "INSERT INTO user_settings (user_id, locale, email_enabled, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(p.user_id)
            .bind(&p.locale)
            .bind(p.email.is_some())
            .bind(p.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(())
        })
    })
    .await?;
    // Emitted on every delivery, also when the rows were already written: an earlier attempt
    // may have committed and then failed to emit. The id is the same each time.
    ctx.emit(welcome);
    Ok(())
}

async fn user_verified(deps: Deps, event: Event, _: Context) -> Result<(), HandlerError> {
    let p: UserVerified = event.payload()?;
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO user_profiles (user_id, verified_kinds, verified_at) \
                 VALUES ($1, ARRAY[$2], $3) \
                 ON CONFLICT (user_id) DO UPDATE \
                   SET verified_kinds = CASE \
                         WHEN $2 = ANY (user_profiles.verified_kinds) \
                           THEN user_profiles.verified_kinds \
                         ELSE array_append(user_profiles.verified_kinds, $2) END, \
                       verified_at = GREATEST(user_profiles.verified_at, EXCLUDED.verified_at), \
                       updated_at = now()",
            )
            .bind(p.user_id)
            .bind(p.verification_kind.as_str())
            .bind(p.verified_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(())
        })
    })
    .await
    .map(drop)
}

async fn user_followed(deps: Deps, event: Event, _: Context) -> Result<(), HandlerError> {
    let p: UserFollowed = event.payload()?;
    if p.follower_id == p.followee_id {
        return Err(HandlerError::permanent("a user cannot follow themselves"));
    }
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            if blocked_between(tx, p.follower_id, p.followee_id).await? {
                return Ok(());
            }
            set_follow(tx, p.follower_id, p.followee_id, true, p.followed_at).await
        })
    })
    .await
    .map(drop)
}

async fn user_unfollowed(deps: Deps, event: Event, _: Context) -> Result<(), HandlerError> {
    let p: UserUnfollowed = event.payload()?;
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            set_follow(tx, p.follower_id, p.followee_id, false, p.unfollowed_at).await
        })
    })
    .await
    .map(drop)
}

async fn user_blocked(deps: Deps, event: Event, _: Context) -> Result<(), HandlerError> {
    let p: UserBlocked = event.payload()?;
    if p.user_id == p.blocked_user_id {
        return Err(HandlerError::permanent("a user cannot block themselves"));
    }
    exactly_once(&deps.pool, GROUP, &event, move |tx| {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO user_blocks (blocker_id, blocked_id, blocked_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
            )
            .bind(p.user_id)
            .bind(p.blocked_user_id)
            .bind(p.blocked_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            // Follows in either direction older than the block end with it.
            let ended: Vec<(Uuid, Uuid)> = sqlx::query_as(
                "UPDATE user_follows SET active = false, created_at = NULL, changed_at = $3 \
                 WHERE ((follower_id = $1 AND followee_id = $2) \
                     OR (follower_id = $2 AND followee_id = $1)) \
                   AND active AND changed_at < $3 \
                 RETURNING follower_id, followee_id",
            )
            .bind(p.user_id)
            .bind(p.blocked_user_id)
            .bind(p.blocked_at)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for (follower, followee) in ended {
                adjust_counts(tx, follower, followee, -1).await?;
            }
            Ok(())
        })
    })
    .await
    .map(drop)
}

/// Whether either user blocked the other (blocks are permanent: there is no unblock event).
async fn blocked_between(tx: &mut PgConnection, a: Uuid, b: Uuid) -> Result<bool, HandlerError> {
    let row: Option<(i32,)> = sqlx::query_as(
        "SELECT 1 FROM user_blocks \
         WHERE (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1) \
         LIMIT 1",
    )
    .bind(a)
    .bind(b)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    Ok(row.is_some())
}

/// Applies a follow (`active`) or an unfollow at event time `at`, unless the pair already holds a
/// change at least as new; moves the counts when the pair's state flips.
async fn set_follow(
    tx: &mut PgConnection,
    follower: Uuid,
    followee: Uuid,
    active: bool,
    at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let created_at = active.then_some(at);
    let inserted = sqlx::query(
        "INSERT INTO user_follows (follower_id, followee_id, active, created_at, changed_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (follower_id, followee_id) DO NOTHING",
    )
    .bind(follower)
    .bind(followee)
    .bind(active)
    .bind(created_at)
    .bind(at)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    let was_active = if inserted == 1 {
        false
    } else {
        // The row lock serialises concurrent changes of this pair (a retry racing a newer event).
        let (was_active, changed_at): (bool, DateTime<Utc>) = sqlx::query_as(
            "SELECT active, changed_at FROM user_follows \
             WHERE follower_id = $1 AND followee_id = $2 FOR UPDATE",
        )
        .bind(follower)
        .bind(followee)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if at <= changed_at {
            return Ok(());
        }
        sqlx::query(
            "UPDATE user_follows \
             SET active = $3, changed_at = $5, \
                 created_at = CASE WHEN $3 AND active THEN created_at ELSE $4 END \
             WHERE follower_id = $1 AND followee_id = $2",
        )
        .bind(follower)
        .bind(followee)
        .bind(active)
        .bind(created_at)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        was_active
    };
    match (was_active, active) {
        (false, true) => adjust_counts(tx, follower, followee, 1).await,
        (true, false) => adjust_counts(tx, follower, followee, -1).await,
        _ => Ok(()),
    }
}

/// Moves the follower's following count and the followee's follower count by `delta`. Rows are
/// touched in id order, so two opposite follows cannot deadlock on them.
async fn adjust_counts(
    tx: &mut PgConnection,
    follower: Uuid,
    followee: Uuid,
    delta: i64,
) -> Result<(), HandlerError> {
    let mut changes = [(follower, FOLLOWING_COUNT), (followee, FOLLOWER_COUNT)];
    changes.sort_by_key(|(user, _)| *user);
    for (user, statement) in changes {
        sqlx::query(statement)
            .bind(user)
            .bind(delta)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

const FOLLOWING_COUNT: &str = "INSERT INTO user_profiles (user_id, following_count) \
     VALUES ($1, GREATEST($2, 0)) ON CONFLICT (user_id) DO UPDATE \
     SET following_count = user_profiles.following_count + $2, updated_at = now()";

const FOLLOWER_COUNT: &str = "INSERT INTO user_profiles (user_id, follower_count) \
     VALUES ($1, GREATEST($2, 0)) ON CONFLICT (user_id) DO UPDATE \
     SET follower_count = user_profiles.follower_count + $2, updated_at = now()";

#[cfg(test)]
mod tests {
    use super::*;

    use circulatory::events::UserSignupMethod;

    fn user(email: Option<&str>) -> UserCreated {
        UserCreated {
            user_id: Uuid::from_u128(1),
            username: "ada".into(),
            display_name: "Ada L".into(),
            email: email.map(str::to_string),
            phone_number: None,
            signup_method: UserSignupMethod::Email,
            locale: Some("en-GB".into()),
            country_code: None,
            referrer_id: None,
            created_at: DateTime::from_timestamp_millis(1_796_358_334_123).expect("in range"),
        }
    }

    #[test]
    fn the_welcome_is_a_system_notification_of_the_new_user() {
        let p = user(Some("ada@example.com"));
        let w = welcome(&p);
        assert_eq!(w.notification_id, welcome_notification_id(p.user_id));
        assert_eq!(w.user_id, p.user_id);
        assert_eq!(w.kind, NotificationKind::System);
        assert_eq!(w.title, "Welcome to D-A-I-R-A!");
        assert_eq!(
            w.body,
            "Hi Ada L, your account is ready. Follow creators to fill your feed."
        );
        assert_eq!((w.actor_id, w.entity_id), (None, None));
        assert_eq!(w.created_at, p.created_at);
        let json = serde_json::to_value(&w).expect("JSON");
        assert_eq!(json["channels"], serde_json::json!(["IN_APP", "EMAIL"]));
        assert_eq!(json["kind"], "SYSTEM");
    }

    #[test]
    fn the_welcome_email_goes_only_to_users_with_an_address() {
        assert_eq!(
            welcome(&user(Some("ada@example.com"))).channels,
            [NotificationChannel::InApp, NotificationChannel::Email]
        );
        assert_eq!(welcome(&user(None)).channels, [NotificationChannel::InApp]);
    }

    #[test]
    fn the_welcome_id_is_the_user_s_alone() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(welcome_notification_id(a), welcome_notification_id(a));
        assert_ne!(welcome_notification_id(a), welcome_notification_id(b));
        assert_eq!(welcome_notification_id(a).get_version_num(), 5);
    }
}
