//! The CPU count: macOS has no affinity masks or cgroups to honour.

/// How many workers to start by default: the online CPUs (std asks `sysconf`, which reads
/// the `hw.activecpu` sysctl), at least 1.
pub fn available_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
