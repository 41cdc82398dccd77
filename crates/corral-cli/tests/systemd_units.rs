//! The sample units in examples/systemd pass `systemd-analyze verify` (Debian's systemd
//! package; it runs without systemd as pid 1, so in a container too) with no warning at all,
//! and the flags their ExecStart gives corral are flags this corral takes.

mod util;
use std::process::Command;
use util::*;

fn units_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/systemd")
}

#[test]
fn sample_units_verify_clean_with_systemd_analyze() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CORRAL_REQUIRE_TOOLS").is_none(),
            "systemd-analyze is required (CORRAL_REQUIRE_TOOLS): apt-get install systemd"
        );
        eprintln!("systemd-analyze is not installed: the sample units were NOT verified");
        return;
    }
    // The units name /usr/local/bin/corral (`make install`); verify checks ExecStart and
    // ExecReload are executables, so they point at this build's binary here.
    let dir = TempDir::new("units");
    let mut names = Vec::new();
    for e in std::fs::read_dir(units_dir()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(
            !name.ends_with(".service") || text.contains("/usr/local/bin/corral run"),
            "{name} runs /usr/local/bin/corral"
        );
        std::fs::write(
            dir.path().join(&name),
            text.replace("/usr/local/bin/corral", CORRAL),
        )
        .unwrap();
        names.push(name);
    }
    names.sort();
    assert_eq!(names, ["corral-demo.service", "corral-demo.socket"]);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(names.iter().map(|n| format!("./{n}")))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on some warnings (an unknown Type= is "ignored"): none is allowed.
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {names:?}: {}\n{said}",
        out.status
    );
}

#[test]
fn the_sample_service_gives_corral_flags_it_takes() {
    let unit = std::fs::read_to_string(units_dir().join("corral-demo.service")).unwrap();
    let exec = unit
        .replace("\\\n", " ")
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=").map(str::to_string))
        .expect("an ExecStart line");
    let words: Vec<&str> = exec.split_whitespace().collect();
    let dashdash = words.iter().position(|w| *w == "--").expect("-- PROGRAM");
    assert_eq!(&words[..2], ["/usr/local/bin/corral", "run"], "{exec}");
    // clap parses every flag and value before it acts on --help.
    let out = Command::new(CORRAL)
        .args(&words[1..dashdash])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "corral {:?}: {}",
        &words[1..dashdash],
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = Command::new(CORRAL)
        .args(["run", "--no-such-flag", "--help"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown flag fails before --help"
    );
}
