//! Readiness: whether this replica accepts work, for `/readyz` and the gRPC health protocol.
//! A replica is ready once it has started and until shutdown begins, and only while its ledger
//! answers: a load balancer stops sending mints to a replica whose database is unreachable, and
//! sends them again, without a restart, once it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tessera_ledger::Ledger;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often the ledger is asked whether it can serve.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The two halves of readiness.
#[derive(Debug)]
pub struct Readiness {
    serving: AtomicBool,
    ledger_ok: AtomicBool,
}

impl Readiness {
    /// Returns a readiness that is not ready until [`Readiness::set_serving`]. The ledger counts
    /// as reachable (it was just opened) until a check says otherwise.
    pub fn new() -> Arc<Self> {
        Arc::new(Readiness {
            serving: AtomicBool::new(false),
            ledger_ok: AtomicBool::new(true),
        })
    }

    /// Says whether the server accepts work (false before start and once shutdown begins).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    /// Returns true when the server accepts work and its ledger answered the last check.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::Acquire) && self.ledger_ok.load(Ordering::Acquire)
    }
}

/// Checks `ledger` every [`CHECK_EVERY`] until `shutdown`, and reports the outcome to
/// `readiness` and, for `services`, to the gRPC health protocol. Logs each change once.
pub async fn watch_ledger(
    readiness: Arc<Readiness>,
    ledger: Arc<dyn Ledger>,
    health: HealthReporter,
    services: &'static [&'static str],
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let mut last: Option<bool> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let result = tokio::time::timeout(CHECK_EVERY, ledger.ping()).await;
        let ok = matches!(result, Ok(Ok(())));
        readiness.ledger_ok.store(ok, Ordering::Release);
        if last != Some(ok) {
            match &result {
                Ok(Ok(())) => tracing::info!("ledger reachable: ready"),
                Ok(Err(e)) => tracing::warn!(error = %e, "ledger unreachable: not ready"),
                Err(_) => tracing::warn!("ledger check timed out: not ready"),
            }
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in services {
                health.set_service_status(*service, status).await;
            }
            last = Some(ok);
        }
    }
    for service in services {
        health
            .set_service_status(*service, ServingStatus::NotServing)
            .await;
    }
}
