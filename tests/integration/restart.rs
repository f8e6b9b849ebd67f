//! Restart: the revocation index is rebuilt from the ledger's persisted counts and X.509 index.

use tessera_proto::revoke_request::Selector;
use tessera_proto::{MintX509Request, RevokeRequest};
use tessera_testkit::dev::WORKLOAD_ID;

use crate::common::{DEST, Env, PURPOSE, crl_serials, csr_der, https_get, mint};

#[tokio::test]
async fn revoke_counts_and_the_crl_survive_a_restart() {
    let env = Env::start().await;
    let mut client = env.workload_client().await;
    for _ in 0..2 {
        mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    }
    let cert = client
        .mint_x509(MintX509Request {
            csr: csr_der(),
            destination: DEST.into(),
            purpose: PURPOSE.into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut env = env.restart().await;
    let reply = env
        .admin_client()
        .await
        .revoke(RevokeRequest {
            selector: Some(Selector::Workload(WORKLOAD_ID.into())),
            reason: "restart test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.credentials_revoked, 3,
        "counted from the restored index"
    );
    let (_, _, body) = https_get(&env, "/crl").await;
    assert_eq!(crl_serials(&body), vec![cert.credential_id]);
    env.shutdown().await;
}
