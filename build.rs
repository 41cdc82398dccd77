//! Generates the C header into $OUT_DIR/corral.h (never into the source tree; the committed
//! include/corral.h is compared with it by tests/header.rs), sets the shared library's soname
//! (install name on macOS), and writes a corral.pc for pkg-config next to the libraries.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

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

    // $OUT_DIR is <target>/<profile>/build/corral-<hash>/out: the libraries land in <profile>.
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        write_pkg_config(profile_dir, &crate_dir, &version);
        if target_os != "macos" {
            // The soname names libcorral.so.MAJOR; cargo only writes libcorral.so. The link
            // points at it (dangling until the link step finishes).
            let link = profile_dir.join(format!("libcorral.so.{major}"));
            if fs::symlink_metadata(&link).is_err() {
                #[cfg(unix)]
                let _ = std::os::unix::fs::symlink("libcorral.so", &link);
            }
        }
    }
}

fn write_pkg_config(libdir: &Path, crate_dir: &Path, version: &str) {
    let pc = format!(
        "libdir={}\nincludedir={}\n\nName: corral\nDescription: Native cluster engine: prefork workers, fd handoff, supervision\n\
         Version: {version}\nLibs: -L${{libdir}} -lcorral\nLibs.private: -lpthread -ldl -lm -lrt -lutil -lgcc_s -lc\n\
         Cflags: -I${{includedir}}\n",
        libdir.display(),
        crate_dir.join("include").display()
    );
    let path = libdir.join("corral.pc");
    if fs::read_to_string(&path).ok().as_deref() != Some(pc.as_str()) {
        let _ = fs::write(path, pc);
    }
}
