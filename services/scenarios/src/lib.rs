//! End-to-end scenarios across the Circulatory pipeline, run against a live deployment the way a
//! client and an operator see it: requests to the ingest API over HTTP, then the consumer groups'
//! effects observed where they land (PostgreSQL rows, Redis feeds and pub/sub channels, the media
//! events on Kafka, the files in the object store).
//!
//! [`video_post`] is the seed's "user creates a video post" walk-through (STEP 1–7). The `demo`
//! binary (`scripts/demo`) runs it against the pipeline `scripts/up` starts; the integration tests
//! run it against the ingest API and the groups started in-process in a fresh namespace.

pub mod clip;
pub mod ingest;
pub mod observe;
pub mod report;
pub mod video_post;
