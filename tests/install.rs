//! `make install` as a C user runs it: into a temporary prefix (and a DESTDIR staging tree),
//! then examples/c/echo_ipc.c is built against the installed files only, with
//! `pkg-config --cflags --libs corral` (shared), `pkg-config --static` (static), and CMake's
//! `find_package(corral)` (both imported targets), and run: it forks real workers and
//! exchanges messages with them.
//!
//! pkg-config and cmake are needed; without them the test fails naming the package, except
//! that a missing cmake only skips the CMake part (loudly) unless CORRAL_REQUIRE_TOOLS=1,
//! which `.ci/run` sets after installing it.
mod util;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use util::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAJOR: &str = env!("CARGO_PKG_VERSION_MAJOR");

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// `make install-only` from the libraries the C tests build (target/ffi/debug), so this test
/// does not build the release profile.
fn make_install(prefix: &Path, destdir: Option<&Path>) {
    let mut cmd = Command::new("make");
    cmd.current_dir(root())
        .arg("--no-print-directory")
        .arg("install-only")
        .arg(format!("LIB_BUILD_DIR={}", lib_dir().display()))
        .arg(format!("PREFIX={}", prefix.display()));
    if let Some(d) = destdir {
        cmd.arg(format!("DESTDIR={}", d.display()));
    }
    ok(&cmd.output().expect("run make"), "make install-only");
    // It once asked rustc for `-o /dev/null`, and rustc renames its output into place.
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device(),
        "make install replaced /dev/null"
    );
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = profile_dir()
            .join("install-tests")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let o = Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .args(args)
        .arg("corral")
        .output()
        .expect("pkg-config is needed (apt-get install pkg-config)");
    ok(&o, "pkg-config");
    String::from_utf8(o.stdout)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn needed(exe: &Path) -> String {
    let o = Command::new("readelf")
        .args(["-d"])
        .arg(exe)
        .output()
        .expect("readelf");
    ok(&o, "readelf -d");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs echo_ipc (3 workers, 500 round trips each) and checks what it printed.
fn run_echo(exe: &Path) {
    let mut cmd = Command::new(exe);
    cmd.args(["--workers", "3", "--messages", "500"]);
    let o = wait_output(spawn(cmd), "echo_ipc", Duration::from_secs(30));
    ok(&o, &format!("{}", exe.display()));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "all messages in order",
            "worker 1: hello, 500 pongs in order",
            "worker 2: hello, 500 pongs in order",
            "worker 3: hello, 500 pongs in order"
        ],
        "{}",
        exe.display()
    );
}

#[test]
fn make_install_gives_a_library_pkg_config_and_cmake_can_build_against() {
    let tmp = TempDir::new("prefix");
    let prefix = tmp.0.join("usr");
    make_install(&prefix, None);

    // The files, with the soname chain libcorral.so -> .so.MAJOR -> .so.VERSION.
    let lib = prefix.join("lib");
    for f in [
        "include/corral.h",
        "lib/libcorral.a",
        "lib/pkgconfig/corral.pc",
        "lib/cmake/corral/corralConfig.cmake",
        "lib/cmake/corral/corralConfigVersion.cmake",
    ] {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    assert_eq!(
        std::fs::read_link(lib.join("libcorral.so")).unwrap(),
        PathBuf::from(format!("libcorral.so.{MAJOR}"))
    );
    assert_eq!(
        std::fs::read_link(lib.join(format!("libcorral.so.{MAJOR}"))).unwrap(),
        PathBuf::from(format!("libcorral.so.{VERSION}"))
    );
    assert_eq!(
        std::fs::read(prefix.join("include/corral.h")).unwrap(),
        std::fs::read(root().join("include/corral.h")).unwrap()
    );
    let pc = std::fs::read_to_string(lib.join("pkgconfig/corral.pc")).unwrap();
    assert!(
        pc.contains(&format!("prefix={}\n", prefix.display())),
        "{pc}"
    );
    assert!(pc.contains(&format!("Version: {VERSION}\n")), "{pc}");
    assert_eq!(
        pkg_config(&prefix, &["--modversion"]),
        [VERSION.to_string()]
    );

    let src = root().join("examples/c/echo_ipc.c");
    let cflags = [
        "-std=c11",
        "-D_GNU_SOURCE",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-O1",
    ];

    // Shared, with pkg-config: the program needs libcorral.so.MAJOR, found through the rpath
    // given here (pkg-config gives none, as for any library outside the loader's paths).
    let shared = tmp.0.join("echo-shared");
    let o = Command::new(cc())
        .args(cflags)
        .args(pkg_config(&prefix, &["--cflags"]))
        .arg(&src)
        .arg("-o")
        .arg(&shared)
        .args(pkg_config(&prefix, &["--libs"]))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .output()
        .unwrap();
    ok(&o, "cc (shared, pkg-config)");
    assert!(
        needed(&shared).contains(&format!("[libcorral.so.{MAJOR}]")),
        "{}",
        needed(&shared)
    );
    run_echo(&shared);

    // Static, with pkg-config --static: libcorral.a plus Libs.private (what rustc says Rust's
    // std needs); nothing of corral is loaded at run time.
    let stat = tmp.0.join("echo-static");
    let libs: Vec<String> = pkg_config(&prefix, &["--static", "--libs"])
        .into_iter()
        .map(|a| {
            if a == "-lcorral" {
                lib.join("libcorral.a").display().to_string()
            } else {
                a
            }
        })
        .collect();
    let o = Command::new(cc())
        .args(cflags)
        .args(pkg_config(&prefix, &["--cflags"]))
        .arg(&src)
        .arg("-o")
        .arg(&stat)
        .args(&libs)
        .output()
        .unwrap();
    ok(&o, "cc (static, pkg-config --static)");
    assert!(!needed(&stat).contains("libcorral"), "{}", needed(&stat));
    run_echo(&stat);

    // CMake: find_package(corral 0.1) and both imported targets.
    if !have("cmake") {
        assert!(
            std::env::var("CORRAL_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "cmake is not installed (apt-get install cmake)"
        );
        eprintln!("SKIPPED the CMake part: cmake is not installed (apt-get install cmake)");
        return;
    }
    let proj = tmp.0.join("cmake-project");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::copy(&src, proj.join("echo_ipc.c")).unwrap();
    let (maj, min) = VERSION.rsplit_once('.').unwrap().0.split_once('.').unwrap();
    std::fs::write(
        proj.join("CMakeLists.txt"),
        format!(
            "cmake_minimum_required(VERSION 3.13)\nproject(app C)\n\
             set(CMAKE_C_STANDARD 11)\nadd_compile_definitions(_GNU_SOURCE)\n\
             find_package(corral {maj}.{min} REQUIRED)\n\
             add_executable(echo_shared echo_ipc.c)\ntarget_link_libraries(echo_shared corral::corral)\n\
             add_executable(echo_static echo_ipc.c)\ntarget_link_libraries(echo_static corral::corral_static)\n"
        ),
    )
    .unwrap();
    let build = proj.join("build");
    let o = Command::new("cmake")
        .arg("-S")
        .arg(&proj)
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .output()
        .unwrap();
    ok(&o, "cmake configure");
    let o = Command::new("cmake")
        .arg("--build")
        .arg(&build)
        .output()
        .unwrap();
    ok(&o, "cmake --build");
    // CMake's build tree links with an rpath to the imported library's directory.
    run_echo(&build.join("echo_shared"));
    assert!(!needed(&build.join("echo_static")).contains("libcorral"));
    run_echo(&build.join("echo_static"));

    // A version the package does not satisfy is refused.
    std::fs::write(
        proj.join("CMakeLists.txt"),
        format!(
            "cmake_minimum_required(VERSION 3.13)\nproject(app C)\nfind_package(corral {} REQUIRED)\n",
            MAJOR.parse::<u32>().unwrap() + 1
        ),
    )
    .unwrap();
    let o = Command::new("cmake")
        .arg("-S")
        .arg(&proj)
        .arg("-B")
        .arg(proj.join("build2"))
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "find_package(corral <next major>) succeeded"
    );
}

#[test]
fn destdir_stages_the_files_for_the_final_prefix() {
    let tmp = TempDir::new("destdir");
    make_install(Path::new("/opt/corral"), Some(&tmp.0));
    let staged = tmp.0.join("opt/corral");
    assert!(staged.join("include/corral.h").is_file());
    assert!(staged.join("lib/libcorral.a").is_file());
    // The links resolve inside the staging tree; the .pc names the final prefix.
    assert!(staged.join("lib/libcorral.so").exists());
    let pc = std::fs::read_to_string(staged.join("lib/pkgconfig/corral.pc")).unwrap();
    assert!(pc.contains("prefix=/opt/corral\n"), "{pc}");
    assert!(pc.contains("libdir=/opt/corral/lib\n"), "{pc}");
}
