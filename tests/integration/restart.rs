//! Restart: the revocation index is rebuilt from the ledger's persisted counts and X.509 index.

use tessera_proto::admin_client::AdminClient;
use tessera_proto::revoke_request::Selector;
use tessera_proto::{MintX509Request, RevokeRequest};
use tessera_testkit::dev::WORKLOAD_ID;

use crate::common::{DEST, Env, Fixture, PURPOSE, https_get, mint};

#[tokio::test]
async fn revoke_counts_and_the_crl_survive_a_restart() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    for _ in 0..2 {
        mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let cert = client
        .mint_x509(MintX509Request {
            csr,
            destination: DEST.into(),
            purpose: PURPOSE.into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    env.shutdown().await;
    let fx = std::mem::replace(&mut env.fx, Fixture::new());
    let mut env = Env::start_fixture(fx).await;
    let reply = AdminClient::new(env.channel(Some(&env.fx.material.admin)).await)
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
    use x509_parser::prelude::FromDer;
    let (_, crl) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&body).unwrap();
    let serials: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string().replace(':', ""))
        .collect();
    assert_eq!(serials, vec![cert.credential_id]);
    env.shutdown().await;
}
