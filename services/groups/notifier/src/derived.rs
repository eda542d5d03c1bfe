//! Notifications derived from activity: each handler emits `notification.created` for the user
//! the activity concerns, and nothing for one's own action (liking or commenting on one's own
//! post). Notification ids are derived from the activity, not from the event id, so a
//! redelivered cause, or the same activity published twice, asks for the same notification and
//! the inbox stores it once; a like removed and added again does not notify twice.

use chrono::{DateTime, Utc};
use circulatory::consumer::{Context, Event, HandlerError};
use circulatory::events::{
    CommentAdded, LikeAdded, NotificationChannel, NotificationCreated, NotificationKind,
    PaymentCompleted, PaymentCompletedKind, UserFollowed, VideoPublished,
};
use uuid::Uuid;

/// Id of the notification about one activity, e.g. `comment/<commentId>`.
pub fn notification_id(activity: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("circulatory/notification/{activity}").as_bytes(),
    )
}

/// A notification to ask for.
struct Derived {
    activity: String,
    user_id: Uuid,
    kind: NotificationKind,
    title: String,
    body: String,
    actor_id: Option<Uuid>,
    entity_id: Option<Uuid>,
    channels: &'static [NotificationChannel],
    created_at: DateTime<Utc>,
}

impl Derived {
    fn emit(self, ctx: &Context) {
        ctx.emit(NotificationCreated {
            notification_id: notification_id(&self.activity),
            user_id: self.user_id,
            kind: self.kind,
            title: self.title,
            body: self.body,
            actor_id: self.actor_id,
            entity_id: self.entity_id,
            channels: self.channels.to_vec(),
            created_at: self.created_at,
        });
    }
}

const SOCIAL: &[NotificationChannel] = &[NotificationChannel::InApp, NotificationChannel::Push];
const RECEIPT: &[NotificationChannel] = &[NotificationChannel::InApp, NotificationChannel::Email];
const ANNOUNCEMENT: &[NotificationChannel] = &[
    NotificationChannel::InApp,
    NotificationChannel::Push,
    NotificationChannel::Email,
];

/// Longest excerpt of user text in a notification body, in characters.
const PREVIEW_CHARS: usize = 140;

/// A comment on someone's post notifies the post's author.
pub async fn comment_added(event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: CommentAdded = event.payload()?;
    if p.author_id != p.post_author_id {
        Derived {
            activity: format!("comment/{}", p.comment_id),
            user_id: p.post_author_id,
            kind: NotificationKind::Comment,
            title: "New comment on your post".into(),
            body: preview(&p.text, PREVIEW_CHARS),
            actor_id: Some(p.author_id),
            entity_id: Some(p.post_id),
            channels: SOCIAL,
            created_at: p.created_at,
        }
        .emit(&ctx);
    }
    Ok(())
}

/// A like on someone's post notifies the post's author, once per liker and post.
pub async fn like_added(event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: LikeAdded = event.payload()?;
    if p.user_id != p.post_author_id {
        Derived {
            activity: format!("like/{}/{}", p.post_id, p.user_id),
            user_id: p.post_author_id,
            kind: NotificationKind::Like,
            title: "New like".into(),
            body: "Your post got a new like.".into(),
            actor_id: Some(p.user_id),
            entity_id: Some(p.post_id),
            channels: SOCIAL,
            created_at: p.liked_at,
        }
        .emit(&ctx);
    }
    Ok(())
}

/// A new follower notifies the followed user, once per follower.
pub async fn user_followed(event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: UserFollowed = event.payload()?;
    if p.follower_id != p.followee_id {
        Derived {
            activity: format!("follow/{}/{}", p.follower_id, p.followee_id),
            user_id: p.followee_id,
            kind: NotificationKind::Follow,
            title: "New follower".into(),
            body: "You have a new follower.".into(),
            actor_id: Some(p.follower_id),
            entity_id: None,
            channels: SOCIAL,
            created_at: p.followed_at,
        }
        .emit(&ctx);
    }
    Ok(())
}

/// A settled payment sends the payer a receipt, and tells the payee (when another user) what
/// they received.
pub async fn payment_completed(event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: PaymentCompleted = event.payload()?;
    let amount = format_amount(p.amount_minor, &p.currency);
    let purpose = p.kind.as_str().to_lowercase().replace('_', " ");
    let receipt = match p.kind {
        PaymentCompletedKind::TopUp => format!("You added {amount} to your wallet."),
        PaymentCompletedKind::Payout => format!("Your payout of {amount} is on its way."),
        _ => format!("You paid {amount} ({purpose})."),
    };
    Derived {
        activity: format!("payment/{}/payer", p.payment_id),
        user_id: p.payer_id,
        kind: NotificationKind::Payment,
        title: "Payment receipt".into(),
        body: receipt,
        actor_id: None,
        entity_id: Some(p.payment_id),
        channels: RECEIPT,
        created_at: p.completed_at,
    }
    .emit(&ctx);
    if let Some(payee) = p.payee_id.filter(|payee| *payee != p.payer_id) {
        Derived {
            activity: format!("payment/{}/payee", p.payment_id),
            user_id: payee,
            kind: NotificationKind::Payment,
            title: "Payment received".into(),
            body: format!("You received {amount} ({purpose})."),
            actor_id: Some(p.payer_id),
            entity_id: Some(p.payment_id),
            channels: RECEIPT,
            created_at: p.completed_at,
        }
        .emit(&ctx);
    }
    Ok(())
}

/// A published video tells its author it is live, on every channel (seed: push, email, in-app).
pub async fn video_published(event: Event, ctx: Context) -> Result<(), HandlerError> {
    let p: VideoPublished = event.payload()?;
    let body = match p.caption.as_deref().map(str::trim) {
        Some(caption) if !caption.is_empty() => format!(
            "\u{201c}{}\u{201d} finished processing and is now live.",
            preview(caption, 80)
        ),
        _ => "Your video finished processing and is now live.".into(),
    };
    Derived {
        activity: format!("video-published/{}", p.video_id),
        user_id: p.author_id,
        kind: NotificationKind::VideoPublished,
        title: "Your video is now live!".into(),
        body,
        actor_id: None,
        entity_id: Some(p.video_id),
        channels: ANNOUNCEMENT,
        created_at: p.published_at,
    }
    .emit(&ctx);
    Ok(())
}

/// `text` trimmed, cut to `max_chars` characters with an ellipsis.
fn preview(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some((cut, _)) => {
            let head: String = text[..cut]
                .chars()
                .take(max_chars.saturating_sub(1))
                .collect();
            format!("{}\u{2026}", head.trim_end())
        }
    }
}

/// An amount in minor units as text, e.g. `1250 USD` → `12.50 USD`, `500 JPY` → `500 JPY`.
fn format_amount(minor: i64, currency: &str) -> String {
    // ISO 4217 minor-unit exponents that differ from 2.
    let exponent: u32 = match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    };
    let sign = if minor < 0 { "-" } else { "" };
    let units = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{units} {currency}");
    }
    let scale = 10u64.pow(exponent);
    format!(
        "{sign}{}.{:0width$} {currency}",
        units / scale,
        units % scale,
        width = exponent as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use circulatory::consumer::testing::{event, event_of, handle};
    use serde_json::json;

    const GROUP: &str = "notifier";

    fn ids() -> (Uuid, Uuid, Uuid) {
        (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4())
    }

    #[tokio::test]
    async fn a_comment_notifies_the_post_s_author_and_one_s_own_comment_nobody() {
        let (comment, post, author) = ids();
        let owner = Uuid::new_v4();
        let data = |author: Uuid| {
            json!({
                "commentId": comment, "postId": post, "authorId": author,
                "postAuthorId": owner, "text": "  nice clip  ", "mentions": [],
                "createdAt": "2026-11-27T10:00:00Z"
            })
        };
        let handled = handle(GROUP, &comment_added, event("comment.added", data(author))).await;
        assert_eq!(handled.result, Ok(()));
        let sent = handled.emitted_data("notification.created");
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["userId"], owner.to_string());
        assert_eq!(sent[0]["actorId"], author.to_string());
        assert_eq!(sent[0]["kind"], "COMMENT");
        assert_eq!(sent[0]["body"], "nice clip");
        assert_eq!(
            sent[0]["notificationId"],
            notification_id(&format!("comment/{comment}")).to_string()
        );
        assert_eq!(sent[0]["channels"], json!(["IN_APP", "PUSH"]));

        let own = handle(GROUP, &comment_added, event("comment.added", data(owner))).await;
        assert_eq!(own.result, Ok(()));
        assert!(own.emitted.is_empty(), "{:?}", own.emitted);
    }

    #[tokio::test]
    async fn the_same_like_published_twice_asks_for_one_notification() {
        let (post, liker, owner) = ids();
        let data = json!({
            "postId": post, "userId": liker, "postAuthorId": owner,
            "likedAt": "2026-11-27T10:00:00Z"
        });
        // Two events (two ids) for one activity: the notification id is the activity's.
        let first = handle(GROUP, &like_added, event("like.added", data.clone())).await;
        let second = handle(GROUP, &like_added, event("like.added", data)).await;
        let (a, b) = (
            first.emitted_data("notification.created"),
            second.emitted_data("notification.created"),
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a[0]["notificationId"], b[0]["notificationId"]);
    }

    #[tokio::test]
    async fn a_payment_sends_a_receipt_and_tells_another_payee() {
        let (payment, payer, payee) = ids();
        let data = |payee: Option<Uuid>, kind: &str| {
            json!({
                "paymentId": payment, "walletId": Uuid::new_v4(), "payerId": payer,
                "payeeId": payee, "amountMinor": 1250, "currency": "USD", "kind": kind,
                "completedAt": "2026-11-27T10:00:00Z"
            })
        };
        let tip = handle(
            GROUP,
            &payment_completed,
            event("payment.completed", data(Some(payee), "TIP")),
        )
        .await;
        let sent = tip.emitted_data("notification.created");
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(sent[0]["userId"], payer.to_string());
        assert_eq!(sent[0]["body"], "You paid 12.50 USD (tip).");
        assert_eq!(sent[1]["userId"], payee.to_string());
        assert_eq!(sent[1]["body"], "You received 12.50 USD (tip).");
        let top_up = handle(
            GROUP,
            &payment_completed,
            event("payment.completed", data(None, "TOP_UP")),
        )
        .await;
        let sent = top_up.emitted_data("notification.created");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["body"], "You added 12.50 USD to your wallet.");
        // Paying oneself: a receipt only.
        let payout = handle(
            GROUP,
            &payment_completed,
            event("payment.completed", data(Some(payer), "PAYOUT")),
        )
        .await;
        let sent: Vec<NotificationCreated> = payout.emitted();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].user_id, payer);
        assert_eq!(sent[0].kind, NotificationKind::Payment);
        assert_eq!(sent[0].actor_id, None);
        assert_eq!(sent[0].entity_id, Some(payment));
        assert_eq!(sent[0].body, "Your payout of 12.50 USD is on its way.");
        assert_eq!(
            sent[0].channels,
            vec![NotificationChannel::InApp, NotificationChannel::Email]
        );
    }

    #[tokio::test]
    async fn a_follower_notifies_the_followed_user_and_following_oneself_nobody() {
        let (follower, followee, _) = ids();
        let followed_at = DateTime::from_timestamp_millis(1_795_773_600_123).expect("in range");
        let follow = |follower, followee| UserFollowed {
            follower_id: follower,
            followee_id: followee,
            followed_at,
        };
        let handled = handle(GROUP, &user_followed, event_of(follow(follower, followee))).await;
        assert_eq!(handled.result, Ok(()));
        let sent: Vec<NotificationCreated> = handled.emitted();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].notification_id,
            notification_id(&format!("follow/{follower}/{followee}"))
        );
        assert_eq!(sent[0].user_id, followee);
        assert_eq!(sent[0].actor_id, Some(follower));
        assert_eq!(sent[0].kind, NotificationKind::Follow);
        assert_eq!(sent[0].created_at, followed_at);
        let own = handle(GROUP, &user_followed, event_of(follow(follower, follower))).await;
        assert_eq!(own.result, Ok(()));
        assert!(own.emitted.is_empty());
    }

    #[tokio::test]
    async fn a_published_video_tells_its_author_with_the_caption_if_any() {
        let (video, author, post) = ids();
        let published = |caption: Option<&str>| VideoPublished {
            video_id: video,
            author_id: author,
            post_id: post,
            caption: caption.map(str::to_string),
            hashtags: vec![],
            mentions: vec![],
            master_playlist_url: "https://cdn.example/v/master.m3u8".into(),
            thumbnail_url: "https://cdn.example/v/thumb.jpg".into(),
            duration_ms: 8000,
            published_at: Utc::now(),
        };
        for (caption, body) in [
            (
                Some("  sunset  "),
                "\u{201c}sunset\u{201d} finished processing and is now live.",
            ),
            (
                Some("   "),
                "Your video finished processing and is now live.",
            ),
            (None, "Your video finished processing and is now live."),
        ] {
            let handled = handle(GROUP, &video_published, event_of(published(caption))).await;
            let sent: Vec<NotificationCreated> = handled.emitted();
            assert_eq!(sent.len(), 1, "{caption:?}");
            assert_eq!(sent[0].body, body);
            assert_eq!(sent[0].user_id, author);
            assert_eq!(sent[0].kind, NotificationKind::VideoPublished);
            assert_eq!(sent[0].entity_id, Some(video));
            assert_eq!(sent[0].channels.len(), 3);
        }
    }

    #[tokio::test]
    async fn a_payload_that_does_not_match_is_a_permanent_failure() {
        let handled = handle(
            GROUP,
            &user_followed,
            event("user.followed", json!({ "followerId": "not a uuid" })),
        )
        .await;
        assert!(
            matches!(handled.result, Err(HandlerError::Permanent(_))),
            "{:?}",
            handled.result
        );
        assert!(handled.emitted.is_empty());
    }

    #[test]
    fn amounts_use_the_currency_exponent() {
        assert_eq!(format_amount(1250, "USD"), "12.50 USD");
        assert_eq!(format_amount(5, "EUR"), "0.05 EUR");
        assert_eq!(format_amount(500, "JPY"), "500 JPY");
        assert_eq!(format_amount(1234, "KWD"), "1.234 KWD");
        assert_eq!(format_amount(-250, "EGP"), "-2.50 EGP");
    }

    #[test]
    fn previews_are_cut_on_characters() {
        assert_eq!(preview("  short  ", 10), "short");
        assert_eq!(preview("exactly10!", 10), "exactly10!");
        assert_eq!(preview("سلام عليكم يا صديقي", 5), "سلام\u{2026}");
        assert_eq!(preview("abcdefghijkl", 5), "abcd\u{2026}");
    }

    #[test]
    fn notification_ids_depend_on_the_activity_only() {
        assert_eq!(notification_id("like/a/b"), notification_id("like/a/b"));
        assert_ne!(notification_id("like/a/b"), notification_id("like/b/a"));
    }
}
