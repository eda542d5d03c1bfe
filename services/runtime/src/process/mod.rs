//! What every binary of the project does the same way at its edges: how it reads its flags, what
//! its exit code means, where its logs go and which signal stops it. A `main.rs` is then its own
//! configuration, its build and its serve loop, nothing else.

mod exit;
pub mod flags;
mod logs;
mod shutdown;

pub use exit::{parse_flags, Exit};
pub use flags::{CatalogFlags, DatabaseFlags, KafkaFlags, RedisFlags};
pub use logs::{init_logs, Logs};
pub use shutdown::shutdown_signal;
