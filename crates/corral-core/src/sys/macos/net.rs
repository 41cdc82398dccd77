//! Unix socket names that fit `sun_path` (104 bytes on macOS).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Longest Unix socket path `bind(2)` takes (`sun_path` is 104 bytes with its NUL).
pub const SUN_PATH_MAX: usize = 103;

/// `path` itself when it fits `sun_path`; `ENAMETOOLONG` otherwise. Linux shortens a long
/// name through `/proc/self/fd/<dir>` (an `O_PATH` handle on its directory); macOS has neither,
/// and binding relative to the cwd would race a `chdir` by another thread.
pub fn short_socket_path(path: &Path) -> io::Result<(PathBuf, Option<File>)> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return Ok((path.to_path_buf(), None));
    }
    Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG))
}
