//! `tessera bench` against the real server: every scenario's requests succeed, so a figure in
//! BENCHMARKS.md never counts refusals as throughput; an over-full broker sheds.

use std::time::Duration;

use tessera_bench::{BenchArgs, Scenario, measure};

use crate::common::{Env, Fixture};

fn args(env: &Env, scenario: Scenario, ci_issuer: std::net::SocketAddr) -> BenchArgs {
    BenchArgs {
        scenario,
        grpc_addr: env.grpc.to_string(),
        http_addr: env.http.to_string(),
        certs: env.fx.dir.path().to_owned(),
        rate: 40.0,
        ramp: 0.0,
        p99_limit_ms: 10_000,
        max_steps: 1,
        overload: 0.0,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(100),
        concurrency: 64,
        connections: 2,
        http1_connections: 2,
        ci_issuer_addr: ci_issuer,
        peer_url: "http://127.0.0.1:9/token".into(),
        revoke_rate: 10.0,
        broker_pid: Some(std::process::id()),
        ceiling_time: Duration::from_millis(20),
        json: false,
        markdown: false,
        write_peer_jwks: None,
        print_broker_config: false,
    }
}

/// A free local port for the generator's CI issuer (the broker's config must name it first).
fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bench_scenario_gets_credentials_from_the_real_server() {
    let ci_issuer = free_port();
    let fx = Fixture::new();
    fx.append_config(&tessera_bench::issuer::broker_config(
        ci_issuer,
        &fx.path("tls-ca.pem"),
    ));
    let env = Env::start_fixture(fx).await;

    for scenario in [
        Scenario::MintJwt,
        Scenario::MintJwtMtls,
        Scenario::MintX509,
        Scenario::Exchange,
        Scenario::Revoke,
    ] {
        let report = measure(&args(&env, scenario, ci_issuer)).await.unwrap();
        let step = &report.steps[0];
        let r = &step.result;
        assert_eq!(r.sent, 20, "{scenario:?}: {r:?}");
        assert_eq!((r.ok, r.errors, r.shed), (20, 0, 0), "{scenario:?}: {r:?}");
        assert!(r.p50_us > 0 && r.goodput > 0.0, "{scenario:?}: {r:?}");
        assert!(step.broker_memory.is_some_and(|m| m.rss_kib > 0));
        let cpu = step.broker_cpu_us.as_ref().unwrap();
        assert!(cpu["total"] > 0.0, "{cpu:?}");
        if scenario == Scenario::Revoke {
            let revoke = step.revoke.as_ref().unwrap();
            assert_eq!(
                (revoke.sent, revoke.ok, revoke.errors),
                (5, 5, 0),
                "{revoke:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_past_max_in_flight_is_reported_as_shedding() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(
        &fx.config_path,
        text.replace("[server]", "[server]\nmax_in_flight = 1"),
    )
    .unwrap();
    let env = Env::start_fixture(fx).await;
    let mut a = args(&env, Scenario::MintX509, free_port());
    a.rate = 4000.0;
    a.concurrency = 512;
    let report = measure(&a).await.unwrap();
    let r = &report.steps[0].result;
    assert!(r.shed > 0, "{r:?}");
    assert_eq!(r.errors, 0, "{r:?}");
    assert!(!report.steps[0].sustained);
}
