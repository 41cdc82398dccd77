//! Every way into the addon's Rust code from JS or libuv has a panic boundary (a panic
//! unwinding into V8 or libuv aborts the process): each `#[napi]` function is
//! `#[napi(catch_unwind)]`, and each `extern "C"` callback catches unwinds itself. Reads the
//! sources, so a new export or callback without one fails here, not in production. What the
//! boundaries do is tested in `test/boundary.test.js` (a panic becomes a JS error).

use std::path::PathBuf;

/// `extern "C"` callbacks that cannot panic, and why.
const CANNOT_PANIC: &[(&str, &str)] = &[(
    "free",
    "events.rs: the external ArrayBuffer's finalizer only frees a Vec<u8>",
)];

fn sources() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    out.sort();
    assert!(out.len() > 3, "no sources found in {}", dir.display());
    out
}

/// The name of the fn a line declares, if it does.
fn declared_fn(line: &str) -> Option<&str> {
    let at = line.find("fn ")?;
    let head = &line[..at];
    if head.contains("//") || head.contains('(') || head.contains('=') {
        return None; // a comment, or a fn type
    }
    let rest = &line[at + 3..];
    Some(&rest[..rest.find(['(', '<'])?])
}

#[test]
fn every_napi_function_catches_unwinds() {
    let mut missing = Vec::new();
    let mut seen = 0;
    for (file, text) in sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let attr = line.trim_start();
            if !attr.starts_with("#[napi") {
                continue;
            }
            // The item the attribute is on: the next line that is not an attribute or a doc.
            let item = lines[i + 1..]
                .iter()
                .map(|l| l.trim_start())
                .find(|l| !l.starts_with("#[") && !l.starts_with("///"))
                .unwrap_or("");
            let Some(name) = declared_fn(item) else {
                continue; // a struct, an impl block, an object type
            };
            seen += 1;
            if !attr.contains("catch_unwind") {
                missing.push(format!("{file}:{}: {name}", i + 1));
            }
        }
    }
    assert!(
        seen >= 20,
        "found only {seen} #[napi] functions: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "#[napi] functions without catch_unwind (a panic would abort the process):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_c_callback_catches_unwinds() {
    let mut missing = Vec::new();
    let mut seen = 0;
    for (file, text) in sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.contains("extern \"C\" fn") {
                continue;
            }
            let Some(name) = declared_fn(line) else {
                continue;
            };
            seen += 1;
            if CANNOT_PANIC.iter().any(|&(n, _)| n == name) {
                continue;
            }
            // The body: up to the closing brace at the declaration's indentation.
            let indent = line.len() - line.trim_start().len();
            let end = format!("{}}}", " ".repeat(indent));
            let body: Vec<&str> = lines[i..]
                .iter()
                .take_while(|l| **l != end)
                .copied()
                .collect();
            if !body.iter().any(|l| l.contains("catch_unwind")) {
                missing.push(format!("{file}:{}: {name}", i + 1));
            }
        }
    }
    assert!(
        seen >= 3,
        "found only {seen} extern \"C\" callbacks: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "extern \"C\" callbacks without catch_unwind (a panic would unwind into C and abort):\n{}",
        missing.join("\n")
    );
}
