//! Durability: a credential a client received survives SIGKILL; shutdown finishes in-flight mints.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_ledger::{Ledger, RedbLedger, RedbOptions};

use crate::common::{DEST, Env, Fixture, PURPOSE, mint};

/// Starts the real binary on `fx`'s config; returns the child and its gRPC address.
fn spawn_broker(fx: &Fixture) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--config"])
        .arg(&fx.config_path)
        .env("TESSERA_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("broker exited before serving").unwrap();
        if let Some(rest) = line.split("grpc_addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {}); // keep draining stderr
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_credential_a_client_received_survives_sigkill() {
    let fx = Fixture::new();
    let (mut child, addr) = spawn_broker(&fx);
    let env = Env {
        grpc: addr,
        http: addr,
        server: None,
        fx,
    };
    let received = Arc::new(Mutex::new(BTreeSet::new()));
    let client = env.workload_client().await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (mut client, received) = (client.clone(), Arc::clone(&received));
        tasks.push(tokio::spawn(async move {
            while let Ok(reply) = mint(&mut client, DEST, PURPOSE, 60, None).await {
                received.lock().unwrap().insert(reply.credential_id);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL, mid-flight
    child.wait().unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let received = received.lock().unwrap().clone();
    assert!(
        received.len() > 10,
        "the load ran: {} mints",
        received.len()
    );
    let ledger = RedbLedger::open(&env.fx.ledger_path, RedbOptions::default()).unwrap();
    for id in &received {
        assert!(
            ledger.get(id).await.unwrap().is_some(),
            "credential {id} was handed out but not recorded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_mints_and_flushes_the_ledger() {
    let mut env = Env::start().await;
    let client = env.workload_client().await;
    let received = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (mut client, received) = (client.clone(), Arc::clone(&received));
        tasks.push(tokio::spawn(async move {
            while let Ok(reply) = mint(&mut client, DEST, PURPOSE, 60, None).await {
                received.lock().unwrap().push(reply.credential_id);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.shutdown().await; // returns once in-flight mints are answered and the ledger is closed
    for task in tasks {
        task.await.unwrap();
    }
    let received = received.lock().unwrap().clone();
    assert!(
        !received.is_empty(),
        "mints were in flight when shutdown began"
    );
    let ledger = RedbLedger::open(&env.fx.ledger_path, RedbOptions::default()).unwrap();
    assert_eq!(
        ledger.len().await.unwrap(),
        received.len() as u64,
        "nothing recorded that was not returned, and vice versa"
    );
    for id in &received {
        assert!(
            ledger.get(id).await.unwrap().is_some(),
            "{id} returned but not recorded"
        );
    }
}

/// Checks, with the broker stopped, that every id in `received` is recorded, that the events
/// run 1..=last without a gap and record each received id as issued, and that the audit chain
/// verifies. Returns the last event sequence.
async fn assert_consistent(fx: &Fixture, received: &BTreeSet<String>, round: usize) -> u64 {
    let ledger = RedbLedger::open(&fx.ledger_path, RedbOptions::default()).unwrap();
    for id in received {
        assert!(
            ledger.get(id).await.unwrap().is_some(),
            "round {round}: credential {id} was handed out but not recorded"
        );
    }
    let last = ledger.last_sequence().await.unwrap();
    let mut issued = BTreeSet::new();
    let mut next = 1;
    loop {
        let events = ledger.events_since(next - 1, 10_000).await.unwrap();
        if events.is_empty() {
            break;
        }
        for event in events {
            assert_eq!(event.sequence, next, "round {round}: events without a gap");
            next += 1;
            if let Some(record) = event.credential {
                issued.insert(record.credential_id);
            }
        }
    }
    assert_eq!(
        next - 1,
        last,
        "round {round}: the last sequence is the last event's"
    );
    assert!(
        received.is_subset(&issued),
        "round {round}: every received credential has its issued event"
    );
    ledger.close().await.unwrap();
    drop(ledger);
    let audited = tessera_server::audit::verify(&fx.ledger_path.with_file_name("audit.log"));
    assert!(
        audited.is_ok(),
        "round {round}: the audit chain: {audited:?}"
    );
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_under_load_lose_no_credential_and_leave_everything_consistent() {
    let fx = Fixture::new();
    let mut env = Env {
        grpc: "127.0.0.1:1".parse().unwrap(),
        http: "127.0.0.1:1".parse().unwrap(),
        server: None,
        fx,
    };
    let received = Arc::new(Mutex::new(BTreeSet::new()));
    let mut last = 0;
    for round in 1..=20 {
        let (mut child, addr) = spawn_broker(&env.fx);
        env.grpc = addr;
        let client = env.workload_client().await;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (mut client, received) = (client.clone(), Arc::clone(&received));
            tasks.push(tokio::spawn(async move {
                while let Ok(reply) = mint(&mut client, DEST, PURPOSE, 60, None).await {
                    received.lock().unwrap().insert(reply.credential_id);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        child.kill().unwrap(); // SIGKILL, mid-flight
        child.wait().unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        let received = received.lock().unwrap().clone();
        let now = assert_consistent(&env.fx, &received, round).await;
        assert!(now > last, "round {round}: the load ran");
        last = now;
    }
    let total = received.lock().unwrap().len();
    assert!(total > 20, "{total} credentials over 20 kills");
    eprintln!("{total} credentials received over 20 SIGKILLs: every one recorded; {last} events");
}

#[tokio::test]
async fn lines_deleted_from_the_end_of_the_audit_log_are_found_with_the_ledgers_anchor() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    for _ in 0..6 {
        mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    }
    env.shutdown().await; // the last line is anchored before the ledger closes
    let log = env.fx.ledger_path.with_file_name("audit.log");
    let verify = |config: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
        command.args(["audit", "verify"]).arg(&log);
        if config {
            command.arg("--config").arg(&env.fx.config_path);
        }
        command.output().unwrap()
    };
    let intact = verify(true);
    assert!(intact.status.success(), "{intact:?}");
    assert!(String::from_utf8_lossy(&intact.stdout).contains("the ledger anchored"));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 5, "{} lines", lines.len());
    let kept = lines[..lines.len() - 5].join("\n") + "\n";
    std::fs::write(&log, kept).unwrap();
    assert!(
        verify(false).status.success(),
        "the chain alone cannot tell (what the anchor is for)"
    );
    let truncated = verify(true);
    assert!(!truncated.status.success(), "{truncated:?}");
    let message = String::from_utf8_lossy(&truncated.stderr);
    assert!(message.contains("truncated"), "{message}");
}
