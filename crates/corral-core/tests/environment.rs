//! `CORRAL_*` variables are read in one place (`corral_core::environ`): a bad value is an
//! error naming the variable, never silently ignored. One test function: the environment is
//! process-wide and test functions of a file run in parallel.

use corral_core::{Primary, PrimaryOptions};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

#[test]
fn bad_corral_variables_are_errors_that_name_them() {
    let stall = corral_core::environ::ENV_STALL_TIMEOUT;
    std::env::set_var(stall, "soon");
    let e = Primary::new(PrimaryOptions::default()).unwrap_err();
    assert_eq!(e.option(), Some(stall), "{e}");
    assert_eq!(e.reason(), "\"soon\" is not a whole number", "{e}");
    // Out of range: named by the variable the user set, not by the field it overrides.
    std::env::set_var(stall, "5");
    let e = Primary::new(PrimaryOptions::default()).unwrap_err();
    assert_eq!(e.option(), Some(stall), "{e}");
    assert!(
        e.message()
            .starts_with("CORRAL_STALL_TIMEOUT_MS: must be between 10 ms"),
        "{e}"
    );
    std::env::set_var(stall, "0");
    let p = Primary::new(PrimaryOptions::default());
    std::env::remove_var(stall);
    assert!(p.is_ok(), "0 turns the check off: {p:?}");
    let window = corral_core::environ::ENV_WINDOW;
    std::env::set_var(window, "48");
    let p = Primary::new(PrimaryOptions::default()).unwrap();
    std::env::remove_var(window);
    assert_eq!(p.window(), 48, "CORRAL_WINDOW overrides the option");
    drop(p);
    for (var, value) in [
        (window, "0"),
        (window, "65537"),
        (corral_core::environ::ENV_MAX_LISTENERS, "0"),
        (corral_core::environ::ENV_ORPHAN_GRACE, "999999999999"),
        ("CORRAL_SCHED_POLICY", "bogus"),
    ] {
        std::env::set_var(var, value);
        let e = Primary::new(PrimaryOptions::default()).unwrap_err();
        std::env::remove_var(var);
        assert_eq!(e.option(), Some(var), "{e}");
        assert!(e.message().starts_with(&format!("{var}: ")), "{e}");
    }

    // Not UTF-8: used to be ignored (the policy silently stayed rr).
    std::env::set_var("CORRAL_SCHED_POLICY", OsStr::from_bytes(b"sh\xffred"));
    let e = Primary::new(PrimaryOptions::default()).unwrap_err();
    std::env::remove_var("CORRAL_SCHED_POLICY");
    assert_eq!(e.option(), Some("CORRAL_SCHED_POLICY"), "{e}");
    assert!(e.message().contains("not UTF-8"), "{e}");

    std::env::set_var(corral_core::ENV_WORKER_ID, OsStr::from_bytes(b"\xff"));
    std::env::set_var(corral_core::ENV_CHANNEL_FD, "7");
    let e = corral_core::WorkerEnv::take().unwrap_err();
    std::env::remove_var(corral_core::ENV_WORKER_ID);
    std::env::remove_var(corral_core::ENV_CHANNEL_FD);
    assert!(e.message().starts_with("CORRAL_WORKER_ID: "), "{e}");
}
