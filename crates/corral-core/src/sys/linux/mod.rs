//! Linux implementation of the `sys` contract (see `sys/mod.rs`).

mod bpf;
mod cpu;
mod errno;
mod fd;
mod net;
mod peek;
mod process;
mod procstat;
// The portable backend (sys/unix/) replaces these with `portable`.
#[cfg(not(feature = "portable"))]
mod seqpacket;
mod signal;

pub use bpf::{
    probe as kernel_steering_probe, LoadMap, ReuseportGroup,
    Unsupported as KernelSteeringUnsupported,
};
pub use cpu::available_parallelism;
pub use errno::{errno_name, last_errno};
pub use fd::{dup_cloexec, dup_raw_cloexec, fd_count, set_cloexec, set_nonblocking};
#[cfg(not(feature = "portable"))]
pub use net::{accept_cloexec, accept_queue_len};
pub use net::{short_socket_path, SUN_PATH_MAX};
pub use peek::{defer_accept, discard_peeked, peek_stream, peer_addr};
pub use process::{
    adopt_seqpacket, fd_is_open, fd_limit, fork, kill, spawn, thread_count, ExitStatus, ForkError,
    ForkOutcome, SpawnSpec, Spawned, StdioSpec,
};
#[cfg(not(feature = "portable"))]
pub use process::{pidfd_open, reap};
pub use procstat::{
    is_runnable, is_stopped, proc_stats, proc_tree_stats, process_tree, process_trees, sched_times,
    SchedTimes,
};
#[cfg(not(feature = "portable"))]
pub use seqpacket::{
    peek_datagram, queued_heads, recv_datagram, recv_datagrams, send_datagram, send_rest,
    seqpacket_pair, Received, MAX_FDS,
};
pub use signal::SignalPipe;
