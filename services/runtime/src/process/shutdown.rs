//! The signal that stops a service: SIGTERM (Kubernetes, systemd, `scripts/up`) or SIGINT.

/// Completes on the first SIGTERM or SIGINT. Where SIGTERM cannot be watched, only SIGINT stops.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown signal received: draining");
}
