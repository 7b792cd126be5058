//! Host tests of the boot-test table itself.
use super::*;
#[test]
fn the_table_covers_the_paging_matrix_and_the_regression() {
    let names: Vec<String> = table().into_iter().map(|t| t.name).collect();
    for mib in [0, 64, 600, 1100] {
        for split in ["512M", "1G"] {
            assert!(
                names.contains(&format!("paging-{split}-initrd-{mib}M")),
                "{mib} {split}"
            );
        }
    }
    assert!(names.iter().any(|n| n.starts_with("regress-2014")));
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "test names are unique");
}

/// The rows of issue 24 cannot pass without the client program: each needs a peer's
/// PASS line and the script's exit 0, and each script refuses an empty `$PEER`.
#[test]
fn the_hostile_rows_fail_without_the_peer() {
    let rows: Vec<BootTest> = table()
        .into_iter()
        .filter(|t| {
            [
                "domu-net-hostile-clients",
                "domu-net-shutdown-detach",
                "domu-net-shutdown-attach",
                "domu-net-fragments",
                "domu-blk-hostile-ext4",
            ]
            .contains(&t.name.as_str())
        })
        .collect();
    assert_eq!(rows.len(), 5);
    for r in &rows {
        assert!(r.domu && r.vifs == 1, "{}", r.name);
        let text = |c: &Check| match c {
            Check::Contains(s) => s.clone(),
            Check::Regex(r) => r.to_string(),
            Check::Report(e) => e.to_string(),
            _ => String::new(),
        };
        assert!(
            r.checks.iter().any(|c| text(c).contains("peer: ")),
            "{}: no peer verdict checked",
            r.name
        );
        assert!(
            r.checks
                .iter()
                .any(|c| text(c) == "`xenbox: dom0-script exit 0`"),
            "{}",
            r.name
        );
        let script = r.dom0_script.expect("a dom0 script");
        assert!(
            script.contains(r#"if [ ! -s "$PEER" ] || [ ! -x "$PEER" ]; then"#),
            "{}",
            r.name
        );
        // The script as dom0 runs it, with no client program or an empty file:
        // it must stop at once, failing, before any step.
        let empty = std::env::temp_dir().join(format!("xtask-empty-peer-{}", std::process::id()));
        std::fs::write(&empty, b"").expect("an empty file");
        for peer in [String::new(), empty.display().to_string()] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("PEER", &peer)
                .env("DOMID", "0")
                .output()
                .expect("sh runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{} with PEER={peer:?}: {stdout}",
                r.name
            );
            assert_eq!(
                stdout.trim_end(),
                format!("no xenbox-peer in dom0 ({peer}): FAIL"),
                "{}",
                r.name
            );
        }
        let _ = std::fs::remove_file(&empty);
    }
}
