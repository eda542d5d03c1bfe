//! `circ deploy kubernetes`: manifests derived from the catalog, so that a group added to
//! `topics.yaml` gets its StatefulSet and autoscaler without anyone writing YAML.
//! `circ deploy monitoring`: its scrape jobs, alerts and dashboard, the same way.

mod kubernetes;
mod monitoring;

use std::process::ExitCode;

use circulatory::catalog::Catalog;

use super::Outcome;
use crate::cli::{DeployTarget, Global};

pub(crate) fn run(global: &Global, catalog: &Catalog, target: DeployTarget) -> Outcome {
    match target {
        DeployTarget::Kubernetes(args) => {
            let files = kubernetes::manifests(catalog, &args, global)?;
            kubernetes::write(&args.out, &files)?;
            eprintln!(
                "wrote {} manifests to {} (kubectl apply -k {})",
                files.len(),
                args.out.display(),
                args.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DeployTarget::Monitoring(args) => monitoring::run(catalog, &args),
    }
}
