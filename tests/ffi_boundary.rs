//! Every C export goes through the panic boundary (src/ffi/boundary.rs): its body calls
//! `guard`, `guard_value` or `free_box`, directly or through a helper of src/ffi whose own
//! body does. A panic that unwinds into C is undefined behaviour (an abort at best), so an
//! export added without the boundary fails here, naming it.
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `fn name(...) ... { body }` of every function in `src`, with whether it is an export.
fn functions(src: &str) -> Vec<(String, bool, String)> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("fn ") {
        let before = &rest[..i];
        let line_start = before.rfind('\n').map_or(0, |n| n + 1);
        let head = &rest[line_start..i];
        let after = &rest[i + 3..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // Only item definitions: the line starts with the qualifiers of an `fn` item.
        let is_item = !name.is_empty()
            && head
                .split_whitespace()
                .all(|w| ["pub", "pub(crate)", "unsafe", "extern", "\"C\"", "const"].contains(&w));
        let Some(open) = after.find('{') else { break };
        if !is_item || after[..open].contains(';') {
            rest = &after[name.len()..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = open;
        for (k, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((
            name,
            head.contains("extern \"C\""),
            after[open..=end].to_string(),
        ));
        rest = &after[end..];
    }
    out
}

#[test]
fn every_export_goes_through_the_panic_boundary() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/ffi");
    let mut fns: BTreeMap<String, (bool, String, String)> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let src = std::fs::read_to_string(&path).unwrap();
        // Unit tests of the module are not exports.
        let src = src.split("#[cfg(test)]").next().unwrap();
        for (name, export, body) in functions(src) {
            fns.insert(name, (export, body, file.clone()));
        }
    }
    let mut guarding: Vec<String> = vec!["guard".into(), "guard_value".into(), "free_box".into()];
    // Helpers that call a guard guard their callers too (to a fixed point).
    loop {
        let more: Vec<String> = fns
            .iter()
            .filter(|(n, (export, body, _))| {
                !*export
                    && !guarding.contains(n)
                    && guarding.iter().any(|g| body.contains(&format!("{g}(")))
            })
            .map(|(n, _)| n.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        guarding.extend(more);
    }
    let exports: Vec<_> = fns.iter().filter(|(_, (export, _, _))| *export).collect();
    assert!(exports.len() > 50, "found only {} exports", exports.len());
    let unguarded: Vec<String> = exports
        .iter()
        .filter(|(_, (_, body, _))| {
            !guarding
                .iter()
                .any(|g| body.contains(&format!("{g}(")) || body.contains(&format!("::{g}(")))
        })
        .map(|(n, (_, _, file))| format!("{n} (src/ffi/{file})"))
        .collect();
    assert!(
        unguarded.is_empty(),
        "exports that do not go through the panic boundary (guard, guard_value, free_box):\n  {}",
        unguarded.join("\n  ")
    );
}
