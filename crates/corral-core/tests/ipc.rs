//! Messages both ways, in order, up to 16 MiB and beyond; the size limit; the send queue limit;
//! malformed frames.

mod util;
use corral_core::{Channel, Recv};
use corral_core::{ErrorKind, Event, Policy};
use std::time::Duration;
use util::*;

#[test]
fn messages_round_trip_in_order_including_16_mib() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    h.start_listening(1);
    let id = h.p.worker_ids()[0];
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 253) as u8).collect();
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for i in 0..200u32 {
        let msg = if i == 100 {
            big.clone()
        } else {
            format!("message {i}").into_bytes()
        };
        h.p.send(id, msg.clone(), Vec::new()).unwrap();
        sent.push(msg);
    }
    let mut got: Vec<Vec<u8>> = Vec::new();
    h.wait("200 echoes", Duration::from_secs(30), |_, ev| {
        if let Event::Message { data, .. } = ev {
            got.push(data.clone());
        }
        (got.len() == sent.len()).then_some(())
    });
    assert_eq!(got.len(), 200);
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert!(
            g == s,
            "message {i} differs (len {} vs {})",
            g.len(),
            s.len()
        );
    }
}

#[test]
fn a_batch_reaches_the_worker_as_its_messages_in_order_and_a_bad_one_is_refused() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    h.start_listening(1);
    let id = h.p.worker_ids()[0];
    let e = h.p.send_batch_tracked(id, &[5, 0, 0, 0, b'x']).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("runs past the end"), "{e}");
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for round in 0..20u32 {
        let plain = format!("plain {round}").into_bytes();
        h.p.send(id, plain.clone(), Vec::new()).unwrap();
        sent.push(plain);
        let mut batch = corral_core::Batch::new();
        for i in 0..=round {
            let m = format!("batch {round} message {i}").into_bytes();
            batch.push(&m);
            sent.push(m);
        }
        h.p.send_batch_tracked(id, &batch.finish()).unwrap();
    }
    let mut got: Vec<Vec<u8>> = Vec::new();
    h.wait(
        "every batched message echoed",
        Duration::from_secs(30),
        |_, ev| {
            if let Event::Message { data, .. } = ev {
                got.push(data.clone());
            }
            (got.len() == sent.len()).then_some(())
        },
    );
    assert_eq!(got, sent, "the echoes in the order sent");
}

#[test]
fn a_64_mib_message_works_and_a_bigger_one_names_the_limit() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    h.start_listening(1);
    let id = h.p.worker_ids()[0];
    let e =
        h.p.send(id, vec![0; (64 << 20) + 1], Vec::new())
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(e.message().contains("64 MiB"), "{e}");
    h.p.send(id, vec![7; 64 << 20], Vec::new()).unwrap();
    let len = h.wait(
        "the 64 MiB echo",
        Duration::from_secs(60),
        |_, ev| match ev {
            Event::Message { data, .. } => Some(data.len()),
            _ => None,
        },
    );
    assert_eq!(len, 64 << 20);
}

#[test]
fn a_malformed_frame_disconnects_that_worker_and_the_primary_keeps_serving() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    let port = h.start_listening(1);
    let bad =
        h.p.spawn_worker(&[("CORRAL_FIXTURE_MODE".into(), "garbage".into())])
            .unwrap();
    let err = h.wait(
        "an error event for the bad worker",
        Duration::from_secs(10),
        |_, ev| match ev {
            Event::Error {
                worker: Some(w),
                error,
            } if *w == bad => Some(error.clone()),
            _ => None,
        },
    );
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(err.message().contains("malformed frame"), "{err}");
    // Disconnected: the bad worker sees EOF and exits with 3 (its fixture's code for that).
    let code = h.wait(
        "the bad worker's exit",
        Duration::from_secs(10),
        |_, ev| match ev {
            Event::Exit { worker, status, .. } if *worker == bad => Some(status.code),
            _ => None,
        },
    );
    assert_eq!(code, Some(3));
    assert!(
        h.log
            .iter()
            .any(|l| l == &format!("Disconnect {{ worker: {bad} }}")),
        "{:#?}",
        h.log
    );
    let answer = with_client(&mut h, move || request(port).unwrap());
    assert_eq!(worker_of(&answer), 1);
}

#[test]
fn message_channels_carry_application_messages_apart_and_end_with_the_worker() {
    let mut h = harness_with(&["message-channel"], Policy::RoundRobin, |o| {
        o.message_channels = true;
    });
    let id = h.p.spawn_worker(&[]).unwrap();
    let mut msgs = Channel::new(h.p.take_message_channel(id).expect("a message channel"));
    assert!(h.p.take_message_channel(id).is_none(), "taken once");
    let mut on_channel = Vec::new();
    h.wait(
        "the worker's exit",
        Duration::from_secs(10),
        |_, ev| match ev {
            Event::Message { data, .. } => {
                on_channel.push(data.clone());
                None
            }
            Event::Exit { status, .. } => Some(status.code),
            _ => None,
        },
    );
    assert_eq!(on_channel, vec![b"on the channel".to_vec()]);
    match msgs.recv(true).unwrap() {
        Recv::Message(m) => {
            let (data, fds) = m.into_user().expect("an application message");
            assert_eq!(data, b"on the message channel");
            assert!(fds.is_empty());
        }
        other => panic!("expected the message, got {other:?}"),
    }
    // The primary kept no copy of the worker's end: the worker's exit ends the channel.
    assert!(matches!(msgs.recv(true).unwrap(), Recv::Eof));
}

#[test]
fn without_the_option_there_is_no_message_channel() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    h.start_listening(1);
    let id = h.p.worker_ids()[0];
    assert!(h.p.take_message_channel(id).is_none());
}

#[test]
fn messages_sent_right_before_an_exit_are_all_delivered_before_it() {
    // The exit (pidfd) may be seen before the last messages are read: they must not be lost.
    const WORKERS: usize = 8;
    const N: u32 = 200;
    let mut h = harness(&["send-exit", &N.to_string()], Policy::RoundRobin);
    for _ in 0..WORKERS {
        h.p.spawn_worker(&[]).unwrap();
    }
    let mut got: std::collections::HashMap<u64, Vec<u32>> = Default::default();
    let mut exited = 0;
    h.wait("every exit", Duration::from_secs(20), |_, ev| {
        match ev {
            Event::Message { worker, data, .. } => got
                .entry(*worker)
                .or_default()
                .push(std::str::from_utf8(data).unwrap().parse().unwrap()),
            Event::Exit { worker, .. } => {
                let seen = got.get(worker).map_or(0, Vec::len);
                assert_eq!(
                    seen, N as usize,
                    "worker {worker}: messages before its exit"
                );
                exited += 1;
            }
            _ => {}
        }
        (exited == WORKERS).then_some(())
    });
    for (w, msgs) in got {
        assert_eq!(msgs, (0..N).collect::<Vec<_>>(), "worker {w}: in order");
    }
}

#[test]
fn a_worker_that_does_not_read_fills_its_queue_to_the_limit_then_sends_are_refused() {
    let limit = 1 << 20;
    assert_eq!(
        corral_core::check_send_queue_limit(1024)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    let mut h = harness_with(&["stall", "127.0.0.1:0"], Policy::RoundRobin, |o| {
        o.send_queue_limit = Some(limit);
    });
    h.start_listening(1);
    let id = h.p.worker_ids()[0];
    let msg = vec![1u8; 64 << 10];
    // Bounded: without a limit this would queue all 4096 (256 MiB).
    let refused = (0..4096).find_map(|i| match h.p.send(id, msg.clone(), Vec::new()) {
        Ok(_) => None,
        Err(e) => Some((i, e)),
    });
    let (accepted, e) = refused.expect("a send refused within 256 MiB");
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    assert!(e.message().contains("limit of 1048576 bytes"), "{e}");
    // The socket took some; the queue holds at most the limit.
    assert!(accepted >= limit / msg.len(), "accepted {accepted}");
    let info = h.p.worker(id).unwrap();
    assert!(info.connected, "a refusal closes nothing");
    assert_eq!(
        h.p.send(id, msg.clone(), Vec::new()).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    // It never reads, so no drain: its end comes as a disconnect.
    h.p.kill(id, libc::SIGKILL).unwrap();
    h.wait(
        "the stalled worker's exit",
        Duration::from_secs(10),
        |_, ev| matches!(ev, Event::Exit { .. }).then_some(()),
    );
    assert!(
        !h.log.iter().any(|l| l.starts_with("Drain")),
        "{:#?}",
        h.log
    );
}

#[test]
fn empty_messages_count_against_the_send_queue_limit_too() {
    let mut h = harness_with(&["stall", "127.0.0.1:0"], Policy::RoundRobin, |o| {
        o.send_queue_limit = Some(64 << 10);
    });
    h.start_listening(1);
    let id = h.p.worker_ids()[0];
    // Bounded: the socket takes a few thousand empty datagrams, the queue 512 (128 bytes each).
    let refused = (0..1_000_000).find_map(|i| match h.p.send(id, Vec::new(), Vec::new()) {
        Ok(_) => None,
        Err(e) => Some((i, e)),
    });
    let (accepted, e) = refused.expect("an empty send refused within a million");
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    assert!(
        accepted < 100_000,
        "{accepted} empty messages accepted: the queue is not bounded"
    );
}
