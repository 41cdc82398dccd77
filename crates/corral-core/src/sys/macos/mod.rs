//! macOS implementation of the `sys` contract (see `sys/mod.rs`): the portable Unix backend
//! (`sys/unix/`: stream channel, SIGCHLD child watching, accept + fcntl) plus what differs per
//! OS here. The POSIX parts of `sys/linux/` (errno names, fd flags, the peek at a new
//! connection, spawn and fork, the signal pipe) are the same files compiled here too, their few
//! Linux-only lines cfg'd, rather than copies that would drift.
//!
//! Built and type-checked in CI (`cargo check`/`clippy --target *-apple-darwin`, a real link
//! of `libcorral.dylib`), not run: there is no macOS machine in CI.

#[path = "../linux/errno.rs"]
mod errno;
#[path = "../linux/fd.rs"]
mod fd;
#[path = "../linux/peek.rs"]
mod peek;
#[path = "../linux/process.rs"]
mod process;
#[path = "../linux/signal.rs"]
mod signal;

mod cpu;
mod net;
mod procstat;
mod steering;

pub use cpu::available_parallelism;
pub use errno::{errno_name, last_errno};
pub use fd::{dup_cloexec, dup_raw_cloexec, fd_count, set_cloexec, set_nonblocking};
pub use net::{short_socket_path, SUN_PATH_MAX};
pub use peek::{defer_accept, discard_peeked, peek_stream, peer_addr};
pub use process::{
    adopt_seqpacket, fd_is_open, fd_limit, fork, kill, spawn, thread_count, ExitStatus, ForkError,
    ForkOutcome, SpawnSpec, Spawned, StdioSpec,
};
pub use procstat::{
    is_runnable, is_stopped, proc_stats, proc_tree_stats, process_tree, process_trees, sched_times,
    SchedTimes,
};
pub use signal::SignalPipe;
pub use steering::{
    probe as kernel_steering_probe, LoadMap, ReuseportGroup,
    Unsupported as KernelSteeringUnsupported,
};
