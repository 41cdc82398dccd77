//! Scheduling policies: who accepts connections and how they reach workers.
//!
//! - [`Policy::RoundRobin`] (`rr`, the default): the primary owns the listening socket, accepts,
//!   and hands each connection to the next worker with room in its window
//!   ([`round_robin::Rotation`]).
//! - [`Policy::Shared`] (`shared`, node:cluster's `SCHED_NONE`): every worker gets the listening
//!   fd and accepts by itself; the kernel decides who wins.
//! - [`Policy::KernelRr`] (`kernel-rr`): exact round-robin dealt by the kernel. Each worker
//!   accepts on its own socket of a `SO_REUSEPORT` group the primary owns, and an eBPF program
//!   picks the socket for every SYN ([`crate::steering`]); the primary is out of the data path.
//!   Where the program cannot be loaded (no `CAP_BPF`, an old kernel, a Unix socket), that
//!   address runs `rr` instead, and the reason is reported once (`Event::Warning`). Workers
//!   release each connection as they take it (an atomic on the group's `load` map), which
//!   gives each one today's `rr` window: a worker with `window` connections handed to it and
//!   not taken yet (stopped, hung) is skipped by the program; open ones do not count.
//! - [`Policy::KernelLeast`] (`kernel-least`): as `kernel-rr`, but the program picks the
//!   worker with the fewest open connections (workers release each one when it closes,
//!   `Worker::closed`); the same fallback, to `least` (primary-accept).
//! - [`Policy::Sticky`] (`sticky`): the primary deals each connection to the worker its client's
//!   key maps to ([`sticky::StickyTable`] over the workers' stable slots): the client address
//!   (cut to `RoutingOptions::address_key`'s prefixes, the real one under the PROXY protocol) or
//!   a key read from the request ([`http_key`]).
//! - [`Policy::Least`] (`least`, `least-p2c`): the primary deals each connection to the worker
//!   with the fewest open connections ([`least::LeastLoaded`]); workers report closes.
//!
//! The pieces the routing policies are built from, each a pure function of its inputs:
//! [`round_robin::Rotation`] (the next worker in turn), [`sticky::StickyTable`] (a client's key to
//! its slot by rendezvous hashing), [`http_key`] (the key read from a request's first bytes) and
//! [`least::LeastLoaded`] (the worker with the fewest open connections).

pub mod http_key;
pub mod least;
pub mod round_robin;
pub mod sticky;

use crate::error::{Error, Result};

/// Environment variable that overrides the policy for a whole cluster: `rr`, `shared`,
/// `kernel-rr`, `kernel-least`, `sticky`, `least` or `least-p2c`.
pub const ENV_POLICY: &str = "CORRAL_SCHED_POLICY";

/// How connections are distributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The primary accepts and deals connections out in turn.
    #[default]
    RoundRobin,
    /// Workers accept on a shared listening socket.
    Shared,
    /// Workers accept on their own sockets of one `SO_REUSEPORT` group; an eBPF program deals
    /// the connections in turn (falls back to [`Policy::RoundRobin`] per address).
    KernelRr,
    /// As [`Policy::KernelRr`], but the eBPF program picks the socket of the worker with the
    /// fewest open connections (falls back to `least`, primary-accept, per address).
    KernelLeast,
    /// The primary accepts and deals each client to the same worker, connection after
    /// connection.
    Sticky,
    /// The primary accepts and deals each connection to the least loaded worker.
    Least(least::Pick),
}

impl Policy {
    /// Parses `rr`/`round-robin`, `shared`/`none`, `kernel-rr`, `kernel-least`, `sticky`,
    /// `least` or `least-p2c`.
    pub fn parse(s: &str) -> Result<Policy> {
        match s {
            "rr" | "round-robin" => Ok(Policy::RoundRobin),
            "shared" | "none" => Ok(Policy::Shared),
            "kernel-rr" => Ok(Policy::KernelRr),
            "kernel-least" => Ok(Policy::KernelLeast),
            "sticky" => Ok(Policy::Sticky),
            "least" => Ok(Policy::Least(least::Pick::Least)),
            "least-p2c" => Ok(Policy::Least(least::Pick::TwoChoices)),
            _ => Err(Error::invalid_option(
                "policy",
                format_args!(
                    "unknown scheduling policy {s:?}: expected \"rr\", \"shared\", \
                     \"kernel-rr\", \"kernel-least\", \"sticky\", \"least\" or \"least-p2c\""
                ),
            )),
        }
    }

    /// The policy named by `CORRAL_SCHED_POLICY`, if set. An unknown value is an error (not
    /// silently the default), so a typo is seen at start.
    pub fn from_env() -> Result<Option<Policy>> {
        match crate::environ::var(ENV_POLICY)? {
            Some(v) if !v.is_empty() => Policy::parse(&v)
                .map(Some)
                .map_err(|e| Error::invalid_option(ENV_POLICY, e.reason())),
            _ => Ok(None),
        }
    }

    /// `"rr"`, `"shared"`, `"kernel-rr"`, `"kernel-least"`, `"sticky"`, `"least"` or
    /// `"least-p2c"`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "rr",
            Policy::Shared => "shared",
            Policy::KernelRr => "kernel-rr",
            Policy::KernelLeast => "kernel-least",
            Policy::Sticky => "sticky",
            Policy::Least(least::Pick::Least) => "least",
            Policy::Least(least::Pick::TwoChoices) => "least-p2c",
        }
    }

    /// Connections of a stream listener are accepted by the primary and dealt out (`rr`, and
    /// `kernel-rr`/`kernel-least` for what lands on the anchor socket and wherever they fell
    /// back, `sticky`, `least`).
    pub fn primary_deals(self) -> bool {
        matches!(
            self,
            Policy::RoundRobin
                | Policy::KernelRr
                | Policy::KernelLeast
                | Policy::Sticky
                | Policy::Least(_)
        )
    }

    /// The eBPF program a kernel-steered policy asks for, with `window` connections open per
    /// worker at most (the `rr` window): `kernel-rr` deals in turn, `kernel-least` picks the
    /// least loaded, both passing over a worker at its window or stalled for `stall` (it left
    /// connections waiting and took none for that long; `None`: never). `None` for the other
    /// policies.
    pub fn kernel_steer(
        self,
        window: u32,
        stall: Option<std::time::Duration>,
    ) -> Option<crate::sys::Steer> {
        // At least 1 ms (a shorter one would be no check at all), at most ~24 days.
        let stall_ms = stall.map_or(0, |t| t.as_millis().clamp(1, u128::from(u32::MAX)) as u32);
        match self {
            Policy::KernelRr => Some(crate::sys::Steer::Window { window, stall_ms }),
            Policy::KernelLeast => Some(crate::sys::Steer::Least { window, stall_ms }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kernel policies carry the stall time into their program (in whole ms, at least
    /// 1); the others have none.
    #[test]
    fn kernel_policies_carry_the_stall_time() {
        use crate::sys::Steer;
        use std::time::Duration;
        let t = Some(Duration::from_millis(25));
        assert_eq!(
            Policy::KernelRr.kernel_steer(32, t),
            Some(Steer::Window {
                window: 32,
                stall_ms: 25
            })
        );
        assert_eq!(
            Policy::KernelLeast.kernel_steer(32, t),
            Some(Steer::Least {
                window: 32,
                stall_ms: 25
            })
        );
        assert_eq!(
            Policy::KernelLeast.kernel_steer(8, Some(Duration::from_micros(10))),
            Some(Steer::Least {
                window: 8,
                stall_ms: 1
            })
        );
        assert_eq!(
            Policy::KernelLeast.kernel_steer(8, None),
            Some(Steer::least_of(8))
        );
        assert_eq!(Policy::RoundRobin.kernel_steer(32, t), None);
    }

    #[test]
    fn names_round_trip() {
        for p in [
            Policy::RoundRobin,
            Policy::Shared,
            Policy::KernelRr,
            Policy::KernelLeast,
            Policy::Sticky,
            Policy::Least(least::Pick::Least),
            Policy::Least(least::Pick::TwoChoices),
        ] {
            assert_eq!(Policy::parse(p.name()).unwrap(), p);
        }
        assert_eq!(Policy::parse("none").unwrap(), Policy::Shared);
        assert!(Policy::parse("fifo").unwrap_err().message().contains(
            "\"rr\", \"shared\", \"kernel-rr\", \"kernel-least\", \"sticky\", \"least\" or \
                 \"least-p2c\""
        ));
    }
}
