//! How a kernel-steering program chooses among a group's worker slots: plain types shared by
//! every platform (only Linux has the programs, `sys/linux/bpf.rs`; elsewhere groups are never
//! created).

/// How the program picks among the filled worker slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// Exact turns over the filled slots (no load map).
    RoundRobin,
    /// Turns as [`Steer::RoundRobin`], but a slot whose `load` is at `window` or more is
    /// skipped (its ticket burnt, as an empty slot's); with every slot full, the anchor.
    /// With `stall_ms` > 0, so is a slot that holds connections and whose worker took none
    /// for `stall_ms` (its loop is blocked: the primary-accept `rr`'s stall check, in the
    /// kernel); it is dealt to again as soon as its worker takes one. 0: no stall check.
    Window {
        /// Connections handed to a worker and not taken yet, at most.
        window: u32,
        /// Milliseconds a worker may hold connections without taking one (0: unbounded).
        stall_ms: u32,
    },
    /// The filled slot with the smallest `load` (ties go to the first in the ticket's
    /// rotation, so equal loads take turns); none under `window`: the anchor. With a
    /// `stall_ms` above 0, a slot whose worker has connections waiting to be taken and took
    /// none for `stall_ms` is passed over (its loop is blocked: the open connections it
    /// serves say nothing of that, so the least loaded can be a blocked worker, and ties go
    /// to it in turn); it is picked again as soon as its worker takes one.
    Least {
        /// Open connections of a worker, at most.
        window: u32,
        /// Milliseconds a worker may leave connections waiting without taking one (0:
        /// unbounded).
        stall_ms: u32,
    },
}

/// `load[slot]` of a slot with no worker (set by the primary when it clears the slot): above
/// any window, so neither variant picks it.
pub const LOAD_EMPTY: u32 = 0x8000_0000;

/// When a worker gives back the unit a load-aware program counted on its slot: what the
/// slot's `load` stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadRelease {
    /// As soon as the worker takes the connection (accepts it on its own socket, or reads it
    /// off the channel): `load` counts connections handed to the worker and not taken yet,
    /// the window of the primary-accept `rr` ([`Steer::Window`], `kernel-rr`). Idle
    /// keep-alive connections do not fill it; a stopped worker's queue does.
    AtAccept,
    /// When the connection closes (`Worker::closed`): `load` counts open connections
    /// ([`Steer::Least`], `kernel-least`).
    AtClose,
}

impl Steer {
    /// When workers release what this program counts; `None` for round-robin (no load).
    pub fn release(self) -> Option<LoadRelease> {
        match self {
            Steer::RoundRobin => None,
            Steer::Window { .. } => Some(LoadRelease::AtAccept),
            Steer::Least { .. } => Some(LoadRelease::AtClose),
        }
    }

    /// [`Steer::Window`] with no stall check.
    pub fn window_of(window: u32) -> Steer {
        Steer::Window {
            window,
            stall_ms: 0,
        }
    }

    /// [`Steer::Least`] with no stall check.
    pub fn least_of(window: u32) -> Steer {
        Steer::Least {
            window,
            stall_ms: 0,
        }
    }

    /// The stall time in nanoseconds, when the program checks for stalls.
    pub fn stall_ns(self) -> Option<u64> {
        match self {
            Steer::Window { stall_ms, .. } | Steer::Least { stall_ms, .. } if stall_ms > 0 => {
                Some(u64::from(stall_ms) * 1_000_000)
            }
            _ => None,
        }
    }

    /// The window, for the load-aware variants.
    pub fn window(self) -> Option<u32> {
        match self {
            Steer::RoundRobin => None,
            Steer::Window { window: w, .. } | Steer::Least { window: w, .. } => Some(w),
        }
    }
}
