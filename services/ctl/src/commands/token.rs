//! `circ token`: a development bearer token for the HTTP APIs.

use std::process::ExitCode;

use circulatory::auth::{claims_for, mint_hs256, AdminRole};

use super::{Failure, Outcome};
use crate::cli::TokenArgs;

pub(crate) fn run(args: TokenArgs) -> Outcome {
    if args.secret.len() < 32 {
        return Err(Failure::Usage(
            "the secret must be at least 32 bytes".into(),
        ));
    }
    let mut claims = claims_for(args.sub, args.ttl);
    claims.events = args.events;
    claims.domains = args.domains;
    claims.admin = args.admin || args.role.is_some();
    if args.role.as_deref() == Some("operator") {
        claims.role = AdminRole::Operator;
    }
    claims.on_behalf = args.on_behalf;
    let token = mint_hs256(args.secret.as_bytes(), &claims).map_err(Failure::Usage)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
