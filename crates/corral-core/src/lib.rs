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
pub mod ipc;
pub mod limits;
pub mod listener;
pub mod policy;
pub mod primary;
pub mod proxy_protocol;
pub mod steering;
pub mod supervisor;
pub mod sys;
pub mod worker;

pub use cluster::{Cluster, ClusterEvent};
pub use error::{Error, ErrorKind, Result};
pub use event::{Event, WorkerId};
pub use ipc::{Channel, Message, Recv};
pub use listener::{BoundAddr, ListenAddr, SocketKind};
pub use policy::Policy;
pub use primary::{
    check_send_queue_limit, Forked, Primary, PrimaryOptions, Sent, WorkerInfo, WorkerState,
    DEFAULT_SEND_QUEUE_LIMIT, SEND_QUEUE_LIMIT_MAX, SEND_QUEUE_LIMIT_MIN,
};
pub use supervisor::{Supervisor, SupervisorEvent, SupervisorOptions};
pub use sys::{available_parallelism, ExitStatus, SpawnSpec, StdioSpec};
pub use worker::{
    Datagram, Delivered, Worker, WorkerEnv, WorkerEvent, WorkerProtocol, ENV_CHANNEL_FD,
    ENV_HEARTBEAT, ENV_MESSAGE_FD, ENV_WORKER_ID,
};
