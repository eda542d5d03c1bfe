//! The dashboard: one page and its script and style, embedded in the binary (no build chain, no
//! separate server). It reads the JSON admin API with the session cookie and polls it.

use axum::extract::{Path, RawQuery};
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// Headers every asset carries: no framing, no sniffing, scripts from here only.
fn secure(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// Plain paths (the alerts' runbooks link to them) lead to the page's own routes.
async fn group_page(Path(group): Path<String>) -> Redirect {
    Redirect::to(&format!("/#/groups/{}", encode(&group)))
}

async fn dead_letters_page(RawQuery(query): RawQuery) -> Redirect {
    match query {
        Some(q) => Redirect::to(&format!("/#/dead-letters?{}", encode_query(&q))),
        None => Redirect::to("/#/dead-letters"),
    }
}

/// Keeps a path segment from breaking out of the fragment.
fn encode(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c))
        .collect()
}

fn encode_query(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-._=&%+".contains(*c))
        .collect()
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/groups/{group}", get(group_page))
        .route("/dead-letters", get(dead_letters_page))
        .route(
            "/",
            get(|| async { secure("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { secure("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { secure("text/css; charset=utf-8", STYLE) }),
        )
}
