//! Helpers for the C and header tests: where the built libraries are, compiling C programs
//! against them, and running processes with a deadline and a reaping guard.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>` of this test run (scratch space for compiled C programs).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The directory with libcorral.so and libcorral.a, built on first use.
///
/// `cargo test` builds the crate as an rlib only, so the C libraries are built here by a
/// nested `cargo build -p corral --lib`, in a target directory of its own (`target/ffi`, or
/// `target/ffi-portable` with the `portable` feature): the outer cargo holds the lock of its own
/// target directory while the tests run.
pub fn lib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = profile_dir().parent().unwrap().to_path_buf();
        // `cargo test --features portable` builds the C libraries on the portable backend too.
        let (dir, features) = if cfg!(feature = "portable") {
            (target.join("ffi-portable"), &["--features", "portable"][..])
        } else {
            (target.join("ffi"), &[][..])
        };
        let o = Command::new(env!("CARGO"))
            .args(["build", "-p", "corral", "--lib"])
            .args(features)
            .env("CARGO_TARGET_DIR", &dir)
            .current_dir(root())
            .output()
            .expect("run cargo");
        assert!(
            o.status.success(),
            "cargo build -p corral failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let dir = dir.join("debug");
        // The soname is libcorral.so.MAJOR (build.rs); cargo writes libcorral.so only, and
        // build.rs writes nothing outside OUT_DIR, so the link the programs load is made here
        // (as `make lib` does for target/release).
        let link = dir.join(concat!("libcorral.so.", env!("CARGO_PKG_VERSION_MAJOR")));
        if std::fs::read_link(&link).is_err() {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("libcorral.so", &link).expect("soname link");
        }
        dir
    })
    .clone()
}

/// The C compiler: `$CC`, else `cc`.
pub fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// How a C program links libcorral.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Shared,
    Static,
}

/// Compiles `src` (C11, -Wall -Wextra -Werror -pedantic) against the built library; returns the
/// executable path (under target/<profile>/c-tests/).
pub fn build_c(src: &Path, link: Link) -> PathBuf {
    // Tests run in parallel and share outputs: compile each (source, link) once.
    static BUILT: Mutex<Vec<(PathBuf, Link, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, out)) = built.iter().find(|(s, l, _)| s == src && *l == link) {
        return out.clone();
    }
    let out = compile_c(src, link);
    built.push((src.to_path_buf(), link, out.clone()));
    out
}

fn compile_c(src: &Path, link: Link) -> PathBuf {
    let dir = profile_dir().join("c-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let stem = src.file_stem().unwrap().to_str().unwrap();
    let out = dir.join(format!(
        "{stem}-{}",
        if link == Link::Shared { "so" } else { "a" }
    ));
    let lib = lib_dir();
    let mut cmd = Command::new(cc());
    cmd.args([
        "-std=c11",
        "-D_GNU_SOURCE",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-O1",
        "-g",
    ])
    .arg("-I")
    .arg(root().join("include"))
    .arg(src)
    .arg("-o")
    .arg(&out);
    match link {
        Link::Shared => {
            cmd.arg(format!("-L{}", lib.display()))
                .arg(format!("-Wl,-rpath,{}", lib.display()))
                .arg("-lcorral")
                .arg("-lpthread");
        }
        Link::Static => {
            cmd.arg(lib.join("libcorral.a"))
                .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil"]);
        }
    }
    let o = cmd.output().expect("run the C compiler");
    assert!(
        o.status.success(),
        "compiling {} ({link:?}) failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A child process that is killed and reaped when dropped (also when a test fails).
pub struct Guard(pub Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            // SIGTERM first so a primary can take its workers down, then SIGKILL.
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `cmd` with piped stdout/stderr, guarded.
pub fn spawn(mut cmd: Command) -> Guard {
    // `cargo test` puts target/<profile> on LD_LIBRARY_PATH, which wins over the programs'
    // RUNPATH: they would load whatever libcorral.so an earlier `cargo build` left there
    // instead of the one `lib_dir()` just built.
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("CORRAL_SCHED_POLICY")
        .env_remove("LD_LIBRARY_PATH");
    Guard(Some(cmd.spawn().expect("spawn")))
}

/// Waits for the guarded child with a deadline; panics (and the guard kills it) on timeout.
pub fn wait_output(mut g: Guard, what: &str, timeout: Duration) -> Output {
    let t0 = Instant::now();
    loop {
        let c = g.0.as_mut().unwrap();
        if c.try_wait().unwrap().is_some() {
            return g.0.take().unwrap().wait_with_output().unwrap();
        }
        assert!(
            t0.elapsed() < timeout,
            "{what} did not finish within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a command to completion with a deadline.
pub fn run(cmd: Command, what: &str, timeout: Duration) -> Output {
    wait_output(spawn(cmd), what, timeout)
}
