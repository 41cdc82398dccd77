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
//!   address runs `rr` instead, and the reason is reported once (`Event::Warning`).
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
/// `kernel-rr`, `sticky`, `least` or `least-p2c`.
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
    /// The primary accepts and deals each client to the same worker, connection after
    /// connection.
    Sticky,
    /// The primary accepts and deals each connection to the least loaded worker.
    Least(least::Pick),
}

impl Policy {
    /// Parses `rr`/`round-robin`, `shared`/`none`, `kernel-rr`, `sticky`, `least` or
    /// `least-p2c`.
    pub fn parse(s: &str) -> Result<Policy> {
        match s {
            "rr" | "round-robin" => Ok(Policy::RoundRobin),
            "shared" | "none" => Ok(Policy::Shared),
            "kernel-rr" => Ok(Policy::KernelRr),
            "sticky" => Ok(Policy::Sticky),
            "least" => Ok(Policy::Least(least::Pick::Least)),
            "least-p2c" => Ok(Policy::Least(least::Pick::TwoChoices)),
            _ => Err(Error::invalid(format!(
                "unknown scheduling policy {s:?}: expected \"rr\", \"shared\", \"kernel-rr\", \
                 \"sticky\", \"least\" or \"least-p2c\""
            ))),
        }
    }

    /// The policy named by `CORRAL_SCHED_POLICY`, if set. An unknown value is an error (not
    /// silently the default), so a typo is seen at start.
    pub fn from_env() -> Result<Option<Policy>> {
        match crate::environ::var(ENV_POLICY)? {
            Some(v) if !v.is_empty() => Policy::parse(&v)
                .map(Some)
                .map_err(|e| e.context(ENV_POLICY)),
            _ => Ok(None),
        }
    }

    /// `"rr"`, `"shared"`, `"kernel-rr"`, `"sticky"`, `"least"` or `"least-p2c"`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "rr",
            Policy::Shared => "shared",
            Policy::KernelRr => "kernel-rr",
            Policy::Sticky => "sticky",
            Policy::Least(least::Pick::Least) => "least",
            Policy::Least(least::Pick::TwoChoices) => "least-p2c",
        }
    }

    /// Connections of a stream listener are accepted by the primary and dealt out (`rr`, and
    /// `kernel-rr` for what lands on its anchor socket and wherever it fell back to `rr`,
    /// `sticky`, `least`).
    pub fn primary_deals(self) -> bool {
        matches!(
            self,
            Policy::RoundRobin | Policy::KernelRr | Policy::Sticky | Policy::Least(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [
            Policy::RoundRobin,
            Policy::Shared,
            Policy::KernelRr,
            Policy::Sticky,
            Policy::Least(least::Pick::Least),
            Policy::Least(least::Pick::TwoChoices),
        ] {
            assert_eq!(Policy::parse(p.name()).unwrap(), p);
        }
        assert_eq!(Policy::parse("none").unwrap(), Policy::Shared);
        assert!(Policy::parse("fifo")
            .unwrap_err()
            .message()
            .contains("\"rr\", \"shared\", \"kernel-rr\", \"sticky\", \"least\" or \"least-p2c\""));
    }
}
