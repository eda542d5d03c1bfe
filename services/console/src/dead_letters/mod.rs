//! Dead letters for operators: the index that lists them without scanning topics, the filters,
//! the actions (retry, discard, edit and retry, bulk with a dry run first) and the bulk jobs.

pub mod actions;
pub mod bulk;
pub mod filter;
pub mod index;
pub mod jobs;
