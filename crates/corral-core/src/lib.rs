//! corral's engine: the primary side (starting workers, owning listeners, handing connections
//! out, watching exits) and the worker side (listening through the primary, receiving
//! connections and messages), on one framed channel per worker.
//!
//! The C ABI (`corral` crate) and the Node addon (`corral-node`) are thin fronts over this crate.
//! See [`guide`] for the scheduling policies, fd ownership and shutdown semantics in prose.
//!
//! # Examples
//! ```no_run
//! use corral_core::{Primary, PrimaryOptions, Event, Forked};
//! let mut primary = Primary::new(PrimaryOptions::default())?;
//! for _ in 0..corral_core::available_parallelism() {
//!     match primary.fork_worker()? {
//!         Forked::Primary(_id) => {}
//!         Forked::Worker(mut worker) => {
//!             worker.listen(&"127.0.0.1:8080".parse()?, 511)?;
//!             while let Some(ev) = worker.next_event(None)? {
//!                 // serve ev
//!                 # let _ = ev;
//!             }
//!             std::process::exit(0);
//!         }
//!     }
//! }
//! loop {
//!     primary.dispatch(None)?;
//!     while let Some(ev) = primary.next_event() {
//!         if let Event::Exit { worker, .. } = ev { eprintln!("worker {worker} exited"); }
//!     }
//! }
//! # Ok::<(), corral_core::Error>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cluster;
pub mod environ;
pub mod error;
pub mod event;
pub mod guide;
pub(crate) mod ipc;
pub mod limits;
pub mod listener;
pub mod policy;
pub mod primary;
pub mod proxy_protocol;
pub mod steering;
pub mod supervisor;
// The OS layer's re-exports are the platform contract (the table in sys/mod.rs): every backend
// (Linux, portable, macOS) provides the whole set, whether or not this build's engine calls
// each item, so an item unused in one configuration is not dead code.
#[allow(dead_code, unused_imports)]
pub(crate) mod sys;
pub mod worker;

pub use cluster::{Cluster, ClusterEvent};
pub use error::{Error, ErrorKind, Result};
pub use event::{Event, WorkerId};
pub use ipc::proto::Batch;
pub use ipc::{Channel, Message, Recv, MAX_MESSAGE_LEN};
pub use listener::{BoundAddr, ListenAddr, SocketKind};
pub use policy::Policy;
pub use primary::{
    check_send_queue_limit, Forked, Poller, Primary, PrimaryOptions, RoutingOptions, RoutingStats,
    Sent, WorkerInfo, WorkerState, DEFAULT_SEND_QUEUE_LIMIT, SEND_QUEUE_LIMIT_MAX,
    SEND_QUEUE_LIMIT_MIN,
};
pub use supervisor::{Supervisor, SupervisorEvent, SupervisorOptions};
/// Each pid's process tree (itself first, then its descendants; bounded), as the supervisor
/// finds it for [`Supervisor::count_descendants`]: for a front that counts per-worker
/// figures of its own (the `corral` command's connections).
pub use sys::process_trees;
pub use sys::{available_parallelism, ExitStatus, SpawnSpec, StdioSpec};
/// For fronts that adopt fds they inherited by number (the `corral` command under systemd socket
/// activation): whether fd N is open, and switching an adopted socket's blocking mode.
pub use sys::{fd_is_open, set_nonblocking};
pub use sys::{kernel_steering_probe, KernelSteeringUnsupported, ReuseportGroup};
pub use worker::{
    Datagram, Delivered, LoadSlots, Worker, WorkerEnv, WorkerEvent, WorkerProtocol, ENV_CHANNEL_FD,
    ENV_HEARTBEAT, ENV_MESSAGE_FD, ENV_WORKER_ID,
};

/// The wire format's decoders, for the fuzz targets (`fuzz/`) and the test that replays their
/// seeds: not an API, and it may change with any release.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::ipc::{frame, proto, reassembly};
}

/// Engine internals the engine's own integration tests (`crates/corral-core/tests/`) measure
/// or set up with. Built only with the `test-fixture` feature, which only those tests turn on.
#[cfg(feature = "test-fixture")]
#[doc(hidden)]
pub mod __testing {
    pub use crate::sys::{fd_count, short_socket_path, SUN_PATH_MAX};
    /// The OS layer itself, for tests that drive the eBPF steering parts and spawned
    /// processes below the engine (tests/kernel_least.rs).
    pub mod sys {
        pub use crate::sys::*;
    }
}
