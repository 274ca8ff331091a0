//! The machine-readable views (extensions): `--libxo json|xml|text` on `list`, `status`,
//! `getactive` and `stat`, every JSON document held to the schema in
//! `gmultipath/schema/gmultipath-stats.schema.json`, the text style byte-identical to no
//! option at all, and `stat`'s counters equal to the requests the class was given.

use std::io;

use geom_multipath::geom_dump::conf_foreign_class;
use geom_multipath::testkit::MemTopology;
use geom_multipath::wire::{self, Reply};
use geom_multipath::{Bio, Class, Done, Errno, Op, Request, Time};
use geom_multipath_proto::{Answer, Call};
use gmultipath::backend::{Backend, UnloadError};
use gmultipath::run::{self, Env};
use serde_json::Value;

const SCHEMA: &str = include_str!("../schema/gmultipath-stats.schema.json");

/// The class in-process, as the host serves it: the GEOM XML, with the counters on ask.
struct Host {
    class: Class,
    topo: MemTopology,
    clock: u64,
}

impl Host {
    fn new() -> Host {
        let mut topo = MemTopology::new();
        topo.disk_with_paths("md", 2, 1 << 20, 512);
        Host {
            class: Class::default(),
            topo,
            clock: 0,
        }
    }

    fn xml(&mut self, stats: bool) -> String {
        let mut xml = String::from("<mesh>\n");
        let infos: Vec<_> = self
            .topo
            .providers
            .keys()
            .filter_map(|n| self.topo.info(n))
            .collect();
        conf_foreign_class(&mut xml, "DISK", infos.iter().map(|i| (i, (0, 0, 0)))).unwrap();
        if stats {
            self.class.observe_states(Time(self.clock));
            self.class.conf_class_stats(&mut xml).unwrap();
        } else {
            self.class.conf_class(&mut xml).unwrap();
        }
        xml.push_str("</mesh>\n");
        xml
    }

    /// `n` requests of `op` and `len` bytes, each taking `latency` ns, the first
    /// `failures` of them failing once with EIO on their first path.
    fn io(&mut self, op: Op, n: u64, len: u64, latency: u64, failures: u64) {
        let geom = self.class.find_geom("FRED").unwrap();
        for i in 0..n {
            let mut bio = Bio::new(i, geom, op, i * len, len);
            self.class.start(&mut bio).unwrap();
            let mut result = if i < failures {
                Err(Errno::EIO)
            } else {
                Ok(())
            };
            loop {
                self.class.arm_deadline(&mut bio, Time(self.clock));
                self.clock += latency;
                match self.class.done_at(&mut bio, result, Time(self.clock)) {
                    Done::Reissue(_) => result = Ok(()),
                    Done::Queued => unreachable!("queue_timeout is 0: nothing waits"),
                    Done::Deliver { result, .. } => {
                        assert_eq!(result, Ok(()));
                        break;
                    }
                }
            }
        }
        self.topo.drain(&mut self.class);
    }
}

impl Backend for Host {
    fn loaded(&mut self) -> bool {
        true
    }
    fn loadable(&mut self) -> bool {
        true
    }
    fn load(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn unload(&mut self) -> Result<(), UnloadError> {
        Ok(())
    }
    fn issue(&mut self, req: &Request) -> Result<Reply, String> {
        let mut req =
            wire::decode_request(&wire::encode_request(req)).map_err(|e| e.to_string())?;
        self.class.ctl(&mut self.topo, &mut req);
        self.topo.drain(&mut self.class);
        Ok(Reply::from_request(&req))
    }
    fn confxml(&mut self) -> io::Result<String> {
        Ok(self.xml(false))
    }
    fn host_call(&mut self, call: &Call) -> Option<io::Result<Answer>> {
        match call {
            Call::StatsXml => {
                // Time passes between two readings, as it does between stat's reports.
                self.clock += 1_000_000_000;
                Some(Ok(Answer::Text(self.xml(true))))
            }
            _ => None,
        }
    }
}

fn run(host: &mut Host, cmdline: &str) -> (i32, String, String) {
    let argv: Vec<String> = cmdline.split_whitespace().map(String::from).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut uuid = || None;
    let code = run::main(
        &argv,
        &mut Env {
            backend: host,
            out: &mut out,
            err: &mut err,
            new_uuid: &mut uuid,
            providers: None,
            terminal: false,
        },
    );
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn ok(host: &mut Host, cmdline: &str) -> String {
    let (code, out, err) = run(host, cmdline);
    assert_eq!((code, err.as_str()), (0, ""), "{cmdline}");
    out
}

/// Parses `text` as JSON and holds it to the schema.
fn valid(text: &str) -> Value {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema is a schema");
    let doc: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{text}");
    doc
}

fn fred(mode: &str) -> Host {
    let mut host = Host::new();
    ok(&mut host, &format!("gmultipath create {mode} FRED md0 md1"));
    let geom = host.class.find_geom("FRED").unwrap();
    host.class.access(&mut host.topo, geom, 1, 1, 0).unwrap();
    host
}

#[test]
fn text_style_is_the_plain_output_byte_for_byte() {
    let mut host = fred("");
    for cmd in ["list", "status", "status -g", "getactive FRED"] {
        let plain = ok(&mut host, &format!("gmultipath {cmd}"));
        assert_eq!(
            ok(&mut host, &format!("gmultipath --libxo text {cmd}")),
            plain
        );
        assert_eq!(
            ok(&mut host, &format!("gmultipath {cmd} --libxo=text")),
            plain
        );
    }
}

#[test]
fn list_status_and_getactive_documents_follow_the_schema() {
    let mut host = fred("-A");
    let list = valid(&ok(&mut host, "gmultipath --libxo json list"));
    assert_eq!(list["__version"], "1");
    let geom = &list["multipath"]["geom"][0];
    assert_eq!(geom["name"], "FRED");
    assert_eq!(geom["mode"], "Active/Active");
    assert_eq!(geom["provider"][0]["name"], "multipath/FRED");
    assert_eq!(geom["provider"][0]["access"], "r1w1e0");
    let paths: Vec<&str> = geom["consumer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["md0", "md1"], "attach order, as list prints them");

    let status = valid(&ok(&mut host, "gmultipath status --libxo json,pretty"));
    let row = &status["multipath"]["geom"][0];
    assert_eq!(row["name"], "multipath/FRED");
    assert_eq!(row["status"], "OPTIMAL");
    assert_eq!(row["component"][1]["state"], "ACTIVE");

    let active = valid(&ok(&mut host, "gmultipath --libxo:J getactive FRED"));
    assert_eq!(
        active["multipath"]["active"],
        serde_json::json!(["md1", "md0"])
    );

    let xml = ok(&mut host, "gmultipath --libxo xml getactive FRED");
    assert_eq!(
        xml,
        "<multipath version=\"1\"><active>md1</active><active>md0</active>\
         <geom>FRED</geom></multipath>\n"
    );
}

#[test]
fn errors_stay_errors_in_every_style() {
    let mut host = fred("");
    let (code, out, err) = run(&mut host, "gmultipath --libxo json list NOPE");
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "gmultipath: Class 'MULTIPATH' does not have an instance named 'NOPE'.\n"
    );
    let (code, _, err) = run(&mut host, "gmultipath --libxo yaml list");
    assert_eq!(code, 1);
    assert_eq!(err, "gmultipath: unknown libxo option value: 'yaml'\n");
}

#[test]
fn stat_counts_what_the_class_was_given() {
    let mut host = fred("");
    // 100 writes of 4 KiB taking 2 ms, the first failing once on the active path; then 50
    // reads of 512 bytes taking 100 µs on the path that took over.
    host.io(Op::Write, 100, 4096, 2_000_000, 1);
    host.io(Op::Read, 50, 512, 100_000, 0);
    let doc = valid(&ok(&mut host, "gmultipath stat -I 0 -c 1 --libxo json"));
    let geom = &doc["multipath"]["geom"][0];
    assert_eq!(geom["name"], "FRED");
    assert_eq!(geom["state"], "DEGRADED");
    assert_eq!(
        geom["ops"]["write"]["requests"], 100,
        "each request answered once"
    );
    assert_eq!(geom["ops"]["write"]["bytes"], 100 * 4096);
    assert_eq!(geom["ops"]["write"]["errors"], 0);
    assert_eq!(geom["ops"]["read"]["requests"], 50);
    assert_eq!(geom["reissues"], 1);
    assert_eq!(geom["failovers"], 1);
    let paths = geom["path"].as_array().unwrap();
    let by_name = |n: &str| paths.iter().find(|p| p["name"] == n).unwrap();
    let (md0, md1) = (by_name("md0"), by_name("md1"));
    assert_eq!(md0["state"], "FAIL");
    assert_eq!(md0["ops"]["write"]["requests"], 1);
    assert_eq!(md0["ops"]["write"]["errors"], 1);
    assert_eq!(md0["errors_by_errno"], serde_json::json!({"5": 1}));
    assert_eq!(md0["failures"], 1);
    assert_eq!(md0["last_failure"]["cause"], "error 5");
    assert_eq!(md1["state"], "ACTIVE");
    assert_eq!(md1["active"], true);
    assert_eq!(md1["ops"]["write"]["requests"], 100);
    assert_eq!(md1["ops"]["read"]["requests"], 50);
    assert_eq!(md1["ops"]["read"]["latency_max_ns"], 100_000);
    let p99 = md1["ops"]["write"]["latency_p99_ns"].as_u64().unwrap();
    assert!((2_000_000..=2_500_000).contains(&p99), "{p99}");
    assert_eq!(
        md1["rate"]["iops"], 0.0,
        "nothing happened during the interval"
    );
}

#[test]
fn stat_reports_the_interval_and_prints_lines_when_piped() {
    let mut host = fred("");
    let (code, out, err) = run(&mut host, "gmultipath stat -I 0 -c 2");
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(
        !out.contains('\x1b'),
        "no terminal control when piped: {out:?}"
    );
    let headers = out.lines().filter(|l| l.starts_with("dT: ")).count();
    assert_eq!(headers, 2, "{out}");
    assert!(
        out.contains("dT: 1.000s"),
        "the interval on the class's clock: {out}"
    );
    let md0 = out.lines().find(|l| l.contains(" md0 ")).unwrap();
    assert!(md0.contains("ACTIVE"), "{md0}");
    assert!(md0.trim_end().ends_with("FRED"), "{md0}");
    let (code, _, err) = run(&mut host, "gmultipath stat -c 0");
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "gmultipath: Invalid count: '0'.\nusage: gmultipath stat [-I interval] [-c count] [name ...]\n"
    );
    let (code, _, err) = run(&mut host, "gmultipath stat -I 0 -c 1 NOPE");
    assert_eq!(
        (code, err.as_str()),
        (1, "gmultipath: No such geom: NOPE.\n")
    );
}
