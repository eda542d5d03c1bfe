//! `circ asyncapi`: the AsyncAPI document of the catalog, for data teams and their tools.

use std::io::Write;
use std::process::ExitCode;

use circulatory::asyncapi::{self, Servers};
use circulatory::catalog::Catalog;

use super::Outcome;
use crate::cli::{AsyncapiArgs, DocumentFormat, Global};

pub(crate) fn run(global: &Global, catalog: &Catalog, args: AsyncapiArgs) -> Outcome {
    let servers = Servers {
        kafka: global.bootstrap.clone(),
        registry_url: global.registry.clone(),
        ingest: args.ingest,
    };
    let document = asyncapi::document(catalog, &servers);
    let text = match args.format {
        DocumentFormat::Yaml => serde_yaml::to_string(&document)?,
        DocumentFormat::Json => serde_json::to_string_pretty(&document)? + "\n",
    };
    // A closed pipe (`| head`) ends the output, not the program with a panic.
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
