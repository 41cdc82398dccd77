//! Runs the Node test suites (`node --test bindings/node/test/`) from `cargo test`, against the
//! addon built the way users build it (`npm run build`), so `cargo test --workspace` covers
//! Rust, C and Node.
//!
//! The build runs cargo again, in a target directory of its own (`target/node`): the outer
//! cargo holds the lock of `target/` while tests run.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/node-<hash>
    exe.ancestors().nth(3).unwrap().join("node")
}

/// Installs the package's devDependencies (the real libraries that `test/register.test.js` runs
/// on corral: prom-client, socket.io, express, ...) at the versions of the committed lock, when
/// `node_modules` is missing or older than `package-lock.json` (npm writes
/// `node_modules/.package-lock.json` on every install). Quiet unless it fails.
///
/// `npm install --no-save`, not `npm ci`: the optionalDependencies (the platform packages
/// `corral-<target>`, built from `npm/<target>/`) are not in the lock until they are published,
/// and `npm ci` refuses a lock without them; `npm install` skips a missing optional package and
/// takes everything else from the lock, which `--no-save` leaves untouched.
fn install_dev_dependencies() {
    let dir = package_dir();
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock = modified(dir.join("package-lock.json"))
        .expect("bindings/node/package-lock.json is missing");
    if modified(dir.join("node_modules").join(".package-lock.json"))
        .is_some_and(|installed| installed >= lock)
    {
        return;
    }
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
    let args = [
        "install",
        "--no-save",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ];
    let out = Command::new(&npm)
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{npm}` to install the Node tests' devDependencies (npm is required): {e}")
        });
    assert!(
        out.status.success(),
        "`{npm} {}` failed in {} ({}), so the Node tests' devDependencies are missing:\n{}\n{}",
        args.join(" "),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn node_test_suites_pass_against_the_built_addon() {
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let v = Command::new(&node)
        .arg("--version")
        .output()
        .expect("node is required for the Node tests");
    let version = String::from_utf8_lossy(&v.stdout).trim().to_string();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(major >= 20, "Node 20 or newer is required, found {version}");

    let build = Command::new(&node)
        .args(["scripts/build.js"])
        .current_dir(package_dir())
        .env("CARGO", env!("CARGO"))
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "npm run build failed:\n{}\n{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );

    install_dev_dependencies();

    // The *.test.js files only: the scenario scripts they run live under test/ too.
    let mut files: Vec<String> = std::fs::read_dir(package_dir().join("test"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".test.js"))
        .map(|n| format!("test/{n}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no test/*.test.js files");
    let mut child = Command::new(&node)
        .args(["--test", "--test-reporter=spec"])
        .args(&files)
        .current_dir(package_dir())
        // Every corral run must happen: a missing addon is a failure here, not a skip.
        .env("CORRAL_COMPAT_REQUIRE_ADDON", "1")
        // test/npm.test.js packs the package, whose `prepack` builds the addon again: in the
        // target directory built above (a no-op), not in the one this test holds locked.
        .env("CARGO", env!("CARGO"))
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("CORRAL_SCHED_POLICY")
        .env_remove("NODE_CLUSTER_SCHED_POLICY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes while the suites run: a child blocked on a full pipe (the spec
    // reporter's output passed 64 KiB as the suites grew) would never exit.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out_reader = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err_reader = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            let _ = child.wait();
            let (stdout, stderr) = (out_reader.join().unwrap(), err_reader.join().unwrap());
            panic!("node --test did not finish within 10 minutes:\n{stdout}\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (out_reader.join().unwrap(), err_reader.join().unwrap());
    assert!(status.success(), "node --test failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
}
