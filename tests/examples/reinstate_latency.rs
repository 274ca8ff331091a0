//! BENCHMARKS.md's reinstatement latency, measured without a process spawn on the
//! measuring side: two gnop paths over loop devices, `configure -c 1 -r 1`; each round the
//! passive path fails every request until the checker marks it FAIL, is healed at a random
//! point of the checker's period, and the time from the heal to the daemon's
//! `is marked OK.` (read over the control socket every millisecond) is taken. The heal is
//! a `gnop configure` run: it takes effect at some point while that command runs, so each
//! round gives the latency from the command's return (a lower bound) and the command's own
//! duration (the most it could add).
//!
//! Usage (root): `cargo run --example reinstate_latency -p gmultipath-e2e [rounds]`, after
//! `cargo build --workspace --bins`.
use std::time::{Duration, Instant};

use gmultipath_e2e::{wait_until, Daemon, Loop, Scratch};

fn marked_ok(d: &Daemon, path: &str) -> usize {
    let text = format!("GEOM_MULTIPATH: {path} in FRED is marked OK.");
    d.messages().iter().filter(|m| **m == text).count()
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(10, |s| s.parse().expect("rounds"));
    let scratch = Scratch::new("reinstate_bench");
    let img = scratch.image("disk.img", 64 << 20);
    let loops = [Loop::attach(&img), Loop::attach(&img)];
    let d = Daemon::start(&scratch);
    d.gnop(&["create", "-o", "4096", &loops[0].name, &loops[1].name])
        .ok();
    let nops = [
        format!("{}.nop", loops[0].name),
        format!("{}.nop", loops[1].name),
    ];
    d.gmultipath(&["label", "FRED", &nops[0], &nops[1]]).ok();
    d.wait_status("FRED", "OPTIMAL");
    d.gmultipath(&["configure", "-c", "1", "-r", "1", "FRED"])
        .ok();
    let passive = &nops[1];
    let mut rows = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..rounds {
        d.gnop(&["configure", "-r", "100", "-w", "100", passive])
            .ok();
        wait_until("FAIL", || {
            d.gmultipath(&["status", "-s", "FRED"])
                .stdout
                .contains(&format!("{passive} (FAIL)"))
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let pause = Instant::now() + Duration::from_millis(seed % 1000);
        wait_until("a random point of the period", || Instant::now() >= pause);
        let before = marked_ok(&d, passive);
        let t0 = Instant::now();
        d.gnop(&["configure", "-r", "0", "-w", "0", passive]).ok();
        let healed = Instant::now();
        wait_until("reinstatement", || marked_ok(&d, passive) > before);
        let done = Instant::now();
        rows.push((done - healed, healed - t0));
    }
    let mut lat: Vec<f64> = rows.iter().map(|r| r.0.as_secs_f64()).collect();
    println!("| round | heal → marked OK (s) | heal command took (s) |");
    println!("|--:|--:|--:|");
    for (i, (l, h)) in rows.iter().enumerate() {
        println!(
            "| {} | {:.3} | {:.3} |",
            i + 1,
            l.as_secs_f64(),
            h.as_secs_f64()
        );
    }
    lat.sort_by(f64::total_cmp);
    let median = lat[lat.len() / 2];
    let max = lat[lat.len() - 1];
    println!(
        "\nmedian {median:.3} s, max {max:.3} s; target ≤ 1.100 s (check_interval + 10 %): {}",
        if max <= 1.1 { "met" } else { "MISSED" }
    );
}
