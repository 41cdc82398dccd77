//! errno values and their symbolic names (Node shows `code: 'EADDRINUSE'`; C users grep for it).

use nix::errno::Errno;
use std::sync::OnceLock;

/// The calling thread's current errno.
pub fn last_errno() -> i32 {
    Errno::last_raw()
}

/// The symbolic name of an errno value (`EADDRINUSE`), from nix's table of this platform's
/// errno values; `None` for 0 and numbers the platform does not define.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    // Errno names are its variants' names; made once (a few KiB), then borrowed forever.
    static NAMES: OnceLock<Vec<Option<&'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..256)
            .map(|n| match Errno::from_raw(n) {
                Errno::UnknownErrno => None,
                e => Some(&*Box::leak(format!("{e:?}").into_boxed_str())),
            })
            .collect()
    });
    names.get(usize::try_from(errno).ok()?).copied().flatten()
}

#[cfg(test)]
mod tests {
    use super::errno_name;

    #[test]
    fn names_are_the_c_names() {
        assert_eq!(errno_name(libc::EADDRINUSE), Some("EADDRINUSE"));
        assert_eq!(errno_name(libc::EMFILE), Some("EMFILE"));
        assert_eq!(errno_name(libc::EAGAIN), Some("EAGAIN"));
        assert_eq!(errno_name(libc::ENOTEMPTY), Some("ENOTEMPTY"));
        assert_eq!(errno_name(0), None);
        assert_eq!(errno_name(-1), None);
        assert_eq!(errno_name(100_000), None);
    }
}
