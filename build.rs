//! Generates the C header into $OUT_DIR/corral.h (never into the source tree; the committed
//! include/corral.h is compared with it by tests/header.rs) and sets the shared library's soname
//! (install name on macOS). Nothing is written outside $OUT_DIR: the soname link, corral.pc and
//! the CMake package are made by `make lib` / `make install` (Makefile).

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    let patch = env::var("CARGO_PKG_VERSION_PATCH").unwrap();
    let version = env::var("CARGO_PKG_VERSION").unwrap();

    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");

    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let macros = format!(
        "#define CORRAL_VERSION_MAJOR {major}\n#define CORRAL_VERSION_MINOR {minor}\n\
         #define CORRAL_VERSION_PATCH {patch}\n#define CORRAL_VERSION_STRING \"{version}\"\n\n\
         #if defined(__GNUC__) || defined(__clang__)\n\
         #define CORRAL_MUST_USE __attribute__((warn_unused_result))\n\
         #else\n#define CORRAL_MUST_USE\n#endif\n"
    );
    config.after_includes = config
        .after_includes
        .map(|s| s.replace("__CORRAL_VERSION_MACROS__", &macros));
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write_to_file(out_dir.join("corral.h"));

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "macos" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libcorral.{major}.dylib");
    } else {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcorral.so.{major}");
    }
}
