//! The systemd unit in `dist/linux` passes `systemd-analyze verify` with the daemon this
//! tree builds in place of the installed one (and the manual pages not installed, hence
//! `--man=no`). Without systemd-analyze it prints SKIPPED and passes.

use std::process::Command;

#[test]
fn the_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: systemd-analyze is not installed (.ci/run installs systemd)");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dist/linux/gmultipathd.service"
    ))
    .expect("the unit");
    assert!(unit.contains("Type=notify\n"), "{unit}");
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID\n"),
        "{unit}"
    );
    let unit = unit.replace("/usr/sbin/gmultipathd", env!("CARGO_BIN_EXE_gmultipathd"));
    let dir = std::env::temp_dir().join(format!("gmp-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gmultipathd.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let about_ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("gmultipathd.service"))
        .collect();
    assert!(about_ours.is_empty(), "{about_ours:#?}");
}
