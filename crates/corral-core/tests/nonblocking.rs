//! `Worker::set_nonblocking_connections`: under every policy a worker that asks for it gets
//! its connections with `O_NONBLOCK` (accepted so where it accepts itself, made so on arrival
//! where the primary deals them), a worker that does not gets them blocking, and a connection
//! one worker gives back reaches the next one as that one asked.
//!
//! The fixture answers "... nonblocking <0|1>" with the flag its connection came with.

mod util;
use corral_core::Policy;
use util::*;

fn nonblocking_flag(answer: &str) -> u8 {
    let mut words = answer
        .split_whitespace()
        .skip_while(|w| *w != "nonblocking");
    words
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no flag in {answer:?}"))
}

fn nonblock() -> [(String, String); 1] {
    [("CORRAL_FIXTURE_NONBLOCK".into(), "1".into())]
}

/// Worker 1 asks for non-blocking connections, worker 2 does not; 40 clients. Returns the
/// answers.
fn mixed(policy: Policy, first: &[(String, String)]) -> Vec<String> {
    let mut h = harness(&["serve", "127.0.0.1:0"], policy);
    let port = h.start_listening_with(&[first, &[]]);
    with_client(&mut h, move || {
        (0..40)
            .map(|i| request(port).unwrap_or_else(|e| panic!("client {i}: {e}")))
            .collect::<Vec<_>>()
    })
}

fn check(policy: Policy, answers: &[String]) {
    for a in answers {
        let want = u8::from(worker_of(a) == 1);
        assert_eq!(
            nonblocking_flag(a),
            want,
            "{policy:?}: worker 1 asked for non-blocking connections, worker 2 did not: {a:?}"
        );
    }
}

#[test]
fn each_worker_gets_its_connections_as_it_asked_under_every_policy() {
    for policy in [
        Policy::RoundRobin,
        Policy::Shared,
        Policy::KernelRr,
        Policy::KernelLeast,
        Policy::Sticky,
        Policy::Least(Default::default()),
    ] {
        let answers = mixed(policy, &nonblock());
        check(policy, &answers);
        // Sticky sends one client address (127.0.0.1) to one worker; the others deal to both.
        if policy != Policy::Sticky {
            for id in [1, 2] {
                assert!(
                    answers.iter().any(|a| worker_of(a) == id),
                    "{policy:?}: worker {id} served: {answers:?}"
                );
            }
        }
    }
}

/// A worker that asked for non-blocking connections gives some back: the primary deals them
/// on, and the worker that did not ask gets them blocking.
#[test]
fn a_refused_connection_reaches_the_next_worker_as_that_one_asked() {
    for policy in [Policy::RoundRobin, Policy::KernelRr] {
        let mut env = nonblock().to_vec();
        env.extend(refusing("1000000:0"));
        let answers = mixed(policy, &env);
        assert!(
            answers.iter().all(|a| worker_of(a) == 2),
            "{policy:?}: worker 1 refuses everything: {answers:?}"
        );
        check(policy, &answers);
    }
}
