//! include/corral.h is what cbindgen generates from the sources, and it compiles cleanly as C11
//! and C++ (with -Wall -Wextra -Werror -pedantic), included twice.
//! On drift: `CORRAL_BLESS=1 cargo test --test header` rewrites the committed header.

mod util;
use std::process::Command;
use util::*;

const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/corral.h"));

#[test]
fn committed_header_matches_the_generated_one() {
    let path = root().join("include/corral.h");
    if std::env::var_os("CORRAL_BLESS").is_some() {
        std::fs::write(&path, GENERATED).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != GENERATED {
        let line = committed
            .lines()
            .zip(GENERATED.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "at the end".to_string(),
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "include/corral.h is out of date with the Rust sources ({line}).\n\
             Regenerate it with: CORRAL_BLESS=1 cargo test --test header"
        );
    }
}

#[test]
fn version_macros_match_the_crate() {
    for (name, v) in [
        ("MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(
            GENERATED.contains(&format!("#define CORRAL_VERSION_{name} {v}\n")),
            "{name}"
        );
    }
}

fn compile(lang: &str, std: &str, compiler: &str) {
    let dir = profile_dir().join("header-check");
    std::fs::create_dir_all(&dir).unwrap();
    let ext = if lang == "c" { "c" } else { "cpp" };
    let src = dir.join(format!("twice.{ext}"));
    std::fs::write(
        &src,
        "#include \"corral.h\"\n#include \"corral.h\"\n\
         int main(void) { return corral_status_str(CORRAL_STATUS_OK) == 0; }\n",
    )
    .unwrap();
    let o = Command::new(compiler)
        .args([
            &format!("-std={std}"),
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-x",
        ])
        .arg(if lang == "c" { "c" } else { "c++" })
        .arg("-I")
        .arg(root().join("include"))
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(
        o.status.success(),
        "{lang} ({std}) rejects the header:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn header_compiles_as_c11_included_twice() {
    compile("c", "c11", &cc());
}

#[test]
fn header_compiles_as_cpp_included_twice() {
    compile(
        "c++",
        "c++17",
        &std::env::var("CXX").unwrap_or_else(|_| "c++".into()),
    );
}

#[test]
fn the_readme_c_example_compiles_and_links() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("```c\n").expect("a C block in the README") + 5;
    let len = readme[start..].find("```").unwrap();
    let dir = profile_dir().join("header-check");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("readme.c");
    std::fs::write(&src, &readme[start..start + len]).unwrap();
    build_c(&src, Link::Shared);
}
