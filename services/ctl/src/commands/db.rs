//! `circ db migrate`: bring PostgreSQL to the schema in `migrations/`.

use std::process::ExitCode;

use circulatory::db;

use super::{Failure, Outcome};
use crate::cli::DbAction;

pub(crate) async fn run(action: DbAction) -> Outcome {
    match action {
        DbAction::Migrate { database_url } => {
            let pool = db::connect(&database_url, 2)
                .await
                .map_err(|e| Failure::Unavailable(e.into()))?;
            db::migrate(&pool).await?;
            println!("migrations applied ({} known)", db::MIGRATOR.iter().count());
            Ok(ExitCode::SUCCESS)
        }
    }
}
