//! The counters (issue 13) through the real daemon: fio writes a known number of requests
//! through a geom whose active path fails writes, and `gmultipath stat --libxo json` and
//! the `--metrics-file` agree with fio's own count — every request once on the geom, the
//! failed attempt once on the failing path, the rest on the path that took over.

use gmultipath_e2e::{root_or_skip, run, wait_until, Daemon, Loop, Scratch};
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn stat_and_the_metrics_file_agree_with_fios_count() {
    if !root_or_skip("stats") || !gmultipath_e2e::fio::available() {
        return;
    }
    let scratch = Scratch::new("stats");
    let img = scratch.image("disk.img", 64 * MIB);
    let loops = [Loop::attach(&img), Loop::attach(&img)];
    let metrics = scratch.dir.join("gmultipath.prom");
    let metrics_arg = metrics.display().to_string();
    let d = Daemon::start_with(
        &scratch,
        &["--metrics-file", &metrics_arg, "--metrics-interval", "0.2"],
    );
    d.gnop(&["create", "-o", "4096", &loops[0].name, &loops[1].name])
        .ok();
    let nops = [
        format!("{}.nop", loops[0].name),
        format!("{}.nop", loops[1].name),
    ];
    d.gmultipath(&["label", "FRED", &nops[0], &nops[1]]).ok();
    d.wait_status("FRED", "OPTIMAL");
    let active = d.active_path("FRED");
    let other = nops.iter().find(|n| **n != active).unwrap().clone();
    // Writes on the active path fail from now on: the first one fails it over.
    d.gnop(&["configure", "-w", "100", &active]).ok();
    d.gmultipathd(&["reset-stats", "FRED"]);

    let file = d.file("FRED").display().to_string();
    let out = run(
        std::path::Path::new("fio"),
        &[
            "--name=count",
            &format!("--filename={file}"),
            "--rw=write",
            "--bs=4k",
            "--size=4m",
            "--direct=1",
            "--ioengine=psync",
            "--output-format=json",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "fio: {}\n{}", out.stdout, out.stderr);
    let fio: Value = serde_json::from_str(&out.stdout).expect("fio's JSON");
    let ios = fio["jobs"][0]["write"]["total_ios"].as_u64().unwrap();
    let errors = fio["jobs"][0]["error"].as_u64().unwrap();
    assert_eq!(
        (ios, errors),
        (1024, 0),
        "4 MiB in 4 KiB writes, none failed"
    );

    let stat = d.gmultipath(&["stat", "-I", "0.1s", "-c", "1", "--libxo", "json"]);
    let doc: Value = serde_json::from_str(stat.ok()).expect("stat's JSON");
    assert_eq!(doc["__version"], "1");
    let geom = doc["multipath"]["geom"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "FRED")
        .expect("FRED in stat");
    let w = &geom["ops"]["write"];
    assert_eq!(w["requests"].as_u64(), Some(ios), "{geom}");
    assert_eq!(w["bytes"].as_u64(), Some(4 * MIB), "{geom}");
    assert_eq!(w["errors"].as_u64(), Some(0), "{geom}");
    assert_eq!(geom["reissues"].as_u64(), Some(1), "{geom}");
    let path = |name: &str| {
        geom["path"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {geom}"))
            .clone()
    };
    let failed = path(&active);
    assert_eq!(failed["state"], "FAIL");
    assert_eq!(failed["ops"]["write"]["requests"].as_u64(), Some(1));
    assert_eq!(failed["ops"]["write"]["errors"].as_u64(), Some(1));
    assert_eq!(failed["errors_by_errno"]["5"].as_u64(), Some(1));
    assert_eq!(failed["last_failure"]["cause"], "error 5");
    let took_over = path(&other);
    assert_eq!(took_over["state"], "ACTIVE");
    assert_eq!(took_over["ops"]["write"]["requests"].as_u64(), Some(ios));
    assert_eq!(
        took_over["ops"]["write"]["latency_count"].as_u64(),
        Some(ios)
    );

    // The metrics file catches up within its interval, and says the same.
    let series = |name: &str, labels: &str| format!("{name}{{{labels}}} ");
    let geom_writes = series(
        "gmultipath_geom_requests_total",
        "geom=\"FRED\",op=\"write\"",
    );
    let path_errors = series(
        "gmultipath_path_io_errors_total",
        &format!("geom=\"FRED\",path=\"{active}\",op=\"write\""),
    );
    let mut text = String::new();
    wait_until("the metrics file to count fio's writes", || {
        text = std::fs::read_to_string(&metrics).unwrap_or_default();
        metric(&text, &geom_writes) == Some(ios)
    });
    assert_eq!(metric(&text, &path_errors), Some(1), "{text}");
    let answer = d.gmultipathd(&["metrics"]);
    assert!(
        answer.contains("# TYPE gmultipath_path_io_latency_seconds histogram"),
        "{answer}"
    );
    d.gmultipath(&["destroy", "FRED"]).ok();
    d.gnop(&["destroy", &nops[0], &nops[1]]).ok();
}
