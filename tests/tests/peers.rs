//! Peer-compatibility suites: unmodified third-party XAPI clients against xapi-sim.
//!
//! Each test starts its own simulated pool in-process (TLS, self-signed, `127.0.0.1:0`, 3 hosts)
//! and runs one peer script from `tests/peers/` as a child process with the URL and credentials
//! in `XO_PEER_*` variables. The clients come from `scripts/setup-peers.sh` (run by
//! `./scripts/test.sh`); when they are missing these tests fail and say so — they never skip.

use xapi_types::XapiError;
use xo_tests::{run_peer, HarnessError, Peer, PeerTarget, SimOptions, SimPool};

/// Starts a pool, runs `script` with `peer` against it, and fails with the whole transcript
/// unless the script exited 0 having reported its summary line.
fn run_scenario(
    options: SimOptions,
    peer: Peer,
    script: &str,
    extra_env: &[(&str, &str)],
    summary: &str,
) {
    let pool = SimPool::start(options).unwrap_or_else(|e| panic!("{e}"));
    let target = PeerTarget::of(&pool);
    assert!(
        target.slave_url.is_some(),
        "a 3-host pool must expose slave URLs"
    );
    let out = match run_peer(peer, script, &target, extra_env) {
        Ok(out) => out,
        Err(e @ HarnessError::PeersNotProvisioned { .. }) => {
            panic!("peer client not provisioned: {e}")
        }
        Err(e) => panic!("{e}"),
    };
    out.assert_success(script);
    assert!(
        out.stdout.contains(summary) && out.stdout.contains(" steps ok, 0 failed"),
        "{script}: no clean summary line\n{}",
        out.transcript()
    );
    assert!(
        !out.stdout.contains("not ok - "),
        "{script}: a step failed\n{}",
        out.transcript()
    );
}

/// Official Python SDK (PyPI `xenapi`, XML-RPC): login, every class's get_all_records, VM
/// start/shutdown/clone with event.from, Async tasks, error codes, HOST_IS_SLAVE.
#[test]
fn python_xenapi_sdk_scenario() {
    run_scenario(
        SimOptions::default(),
        Peer::Python,
        "python/scenario.py",
        &[],
        "python-xenapi peer:",
    );
}

/// Xen Orchestra's client (npm `xen-api`) over JSON-RPC: its event loop (event.inject +
/// event.from + get_all_records of every class) must stay healthy through the scenario.
#[test]
fn node_xen_api_json_rpc_scenario() {
    run_scenario(
        SimOptions::default(),
        Peer::Node,
        "node/scenario.mjs",
        &[("XO_PEER_TRANSPORT", "json-rpc")],
        "node xen-api peer (json-rpc):",
    );
}

/// The same client forced onto its XML-RPC transport (what it falls back to on older hosts).
#[test]
fn node_xen_api_xml_rpc_scenario() {
    run_scenario(
        SimOptions::default(),
        Peer::Node,
        "node/scenario.mjs",
        &[("XO_PEER_TRANSPORT", "xml-rpc")],
        "node xen-api peer (xml-rpc):",
    );
}

/// XO's client on a pool of the size the simulator's docs show (3 hosts, 200 VMs): the initial
/// fetch, the event loop and the VM lifecycle must work at that scale too.
#[test]
fn node_xen_api_200_vm_pool_scenario() {
    run_scenario(
        SimOptions {
            hosts: 3,
            vms: 200,
            ..SimOptions::default()
        },
        Peer::Node,
        "node/scenario.mjs",
        &[("XO_PEER_TRANSPORT", "json-rpc")],
        "node xen-api peer (json-rpc):",
    );
}

/// The harness itself: a default pool has a master and two slaves on distinct loopback addresses,
/// all HTTPS on one port, and stops when dropped (the port is free again).
#[test]
fn harness_sim_pool_layout() {
    let pool = SimPool::start(SimOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let master = pool.master_url().to_owned();
    assert!(master.starts_with("https://127.0.0.1:"), "{master}");
    let port = master
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("master URL has a port");
    assert_eq!(pool.slave_urls().len(), 2, "{:?}", pool.slave_urls());
    for (j, slave) in pool.slave_urls().iter().enumerate() {
        assert_eq!(slave, &format!("https://127.0.0.{}:{port}/", j + 2));
    }
    assert_eq!((pool.user(), pool.password()), ("root", "root"));
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("master accepts connections");
    drop(pool);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the pool still listens after being dropped"
    );
}

/// XO's client rides out what a long-lived connection meets: `EVENTS_LOST` from `event.from`
/// (it must reload everything and go on) and a session that expired under a call
/// (`SESSION_INVALID`: it must log in again and retry), without logging anything.
#[test]
fn node_xen_api_recovers_from_events_lost_and_session_invalid() {
    let pool = SimPool::start(SimOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let faults = &pool.state().faults;
    faults.fail_next("event.from", XapiError::code("EVENTS_LOST"));
    faults.fail_next(
        "VM.start",
        XapiError::new("SESSION_INVALID", ["OpaqueRef:expired"]),
    );
    let out = run_peer(
        Peer::Node,
        "node/scenario.mjs",
        &PeerTarget::of(&pool),
        &[("XO_PEER_TRANSPORT", "json-rpc")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    out.assert_success("node/scenario.mjs with injected EVENTS_LOST and SESSION_INVALID");
    // Both faults were consumed by the client's calls (else these would fail with them).
    let session = pool.login().expect("in-process login");
    let err = pool
        .call(
            "VM.start",
            vec![
                session.clone().into(),
                "OpaqueRef:00000000-dead-beef-0000-000000000000".into(),
                false.into(),
                false.into(),
            ],
        )
        .expect_err("bogus VM ref");
    assert_eq!(err.code, "HANDLE_INVALID", "{err:?}");
    pool.call(
        "event.from",
        vec![session.into(), vec!["vm"].into(), "".into(), 0.0.into()],
    )
    .expect("event.from after the injected EVENTS_LOST was consumed");
    assert!(
        out.stdout.contains(" steps ok, 0 failed"),
        "{}",
        out.transcript()
    );
}
