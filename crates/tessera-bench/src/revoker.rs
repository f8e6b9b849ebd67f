//! The `revoke` scenario: `MintJwt` over mTLS at the step's rate while an admin revokes, at
//! `--revoke-rate`, the credential minted most recently (`Admin/Revoke { credential_id }`).
//! Reports the mint percentiles under revocation and the revocations' own latency.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tonic::transport::Channel;

use super::BenchArgs;
use super::drive::{Load, StepParams};
use super::target::{self, GrpcMint, MintKind, TargetError};
use tessera_proto::RevokeRequest;
use tessera_proto::admin_client::AdminClient;
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::revoke_request::Selector;

/// Why the `revoke` scenario could not connect or run.
#[derive(Debug, thiserror::Error)]
pub enum RevokerError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("{url}: no admin connection")]
    NoAdminConnection { url: String },
    #[error("histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
}

/// Sends the revocations of one run.
#[derive(Debug, Clone)]
pub struct Revoker {
    admin: AdminClient<Channel>,
    minted: Arc<Mutex<mpsc::Receiver<String>>>,
}

/// Latency of the revocations sent during one step (send → reply: rule durable and enforced).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RevokeSummary {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Connects the mint load (mTLS, the dev workload) and the admin (mTLS, the dev admin).
///
/// Fails with [`RevokerError::Target`] naming the file or URL if a certificate file cannot be
/// read or either connection cannot be made.
pub async fn connect(args: &BenchArgs) -> Result<(Arc<dyn Load>, Revoker), RevokerError> {
    let read = |name: &str| target::read_cert_file(&args.certs, name);
    let ca = read("tls-ca.pem")?;
    let url = format!("https://{}", args.grpc_addr);
    let workload = Some((read("workload.pem")?, read("workload-key.pem")?));
    let channels = target::channels(&url, &ca, workload, args.connections).await?;
    let (feed, minted) = mpsc::channel(1024);
    let load = target::shared(GrpcMint {
        clients: channels.into_iter().map(BrokerClient::new).collect(),
        bearer: None,
        kind: MintKind::Jwt,
        minted: Some(feed),
    });
    let admin = Some((read("admin.pem")?, read("admin-key.pem")?));
    let admin = target::channels(&url, &ca, admin, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| RevokerError::NoAdminConnection { url: url.clone() })?;
    Ok((
        load,
        Revoker {
            admin: AdminClient::new(admin),
            minted: Arc::new(Mutex::new(minted)),
        },
    ))
}

impl Revoker {
    /// Revokes `rate` credentials per second for as long as step `p` runs; returns their
    /// latency. Fails with [`RevokerError::Histogram`] only if the histogram cannot be built;
    /// refused revocations are counted, not failures.
    pub async fn run(self, rate: f64, p: StepParams) -> Result<RevokeSummary, RevokerError> {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3)?;
        let (mut ok, mut errors) = (0, 0);
        let start = Instant::now() + p.warmup;
        let count = (p.duration.as_secs_f64() * rate).floor() as u64;
        for n in 0..count {
            let intended = start + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(intended).await;
            let Some(id) = self.latest().await else {
                errors += 1;
                continue;
            };
            let request = RevokeRequest {
                selector: Some(Selector::CredentialId(id)),
                reason: "tessera bench".into(),
            };
            match self.admin.clone().revoke(request).await {
                Ok(_) => {
                    ok += 1;
                    let micros = u64::try_from(intended.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latency.saturating_record(micros.max(1));
                }
                Err(_) => errors += 1,
            }
        }
        Ok(RevokeSummary {
            sent: count,
            ok,
            errors,
            p50_us: latency.value_at_quantile(0.5),
            p99_us: latency.value_at_quantile(0.99),
            max_us: latency.max(),
        })
    }

    /// Returns the most recently minted credential id, draining older ones.
    async fn latest(&self) -> Option<String> {
        let mut minted = self.minted.lock().await;
        let mut latest = None;
        while let Ok(id) = minted.try_recv() {
            latest = Some(id);
        }
        latest
    }
}
