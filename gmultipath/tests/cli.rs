//! The whole geom(8) flow — argv to stdout, stderr and exit status — against the real
//! class running in-process over the in-memory topology: usage, getopt errors, autoload,
//! every verb's success and error output, label/clear/prefer in userland, and the
//! list/status/getactive golden text of COMPAT.md §7.

use std::io;

use geom_multipath::geom_dump::conf_foreign_class;
use geom_multipath::testkit::MemTopology;
use geom_multipath::wire::{self, Reply};
use geom_multipath::{Class, Request};
use geom_multipath_proto::{Answer, Call};
use gmultipath::backend::{Backend, UnloadError, Unreachable};
use gmultipath::run::{self, Env};

const MIB: u64 = 1 << 20;

/// The class in-process, standing in for the kernel or the host.
struct Fake {
    class: Class,
    topo: MemTopology,
    loaded: bool,
    loadable: bool,
    load_fails: bool,
    /// `unload` finds no module (it went away after the availability check).
    unload_finds_nothing: bool,
    /// A running host that will not be asked.
    unreachable: Option<Unreachable>,
}

impl Fake {
    fn new() -> Self {
        Fake {
            class: Class::default(),
            topo: MemTopology::new(),
            loaded: true,
            loadable: true,
            load_fails: false,
            unload_finds_nothing: false,
            unreachable: None,
        }
    }

    /// One disk reachable through providers `<prefix>0..n`.
    fn disk(mut self, prefix: &str, n: usize, size: u64) -> Self {
        self.topo.disk_with_paths(prefix, n, size, 512);
        self
    }

    fn retaste(&mut self, name: &str) {
        let _ = self.topo.taste(&mut self.class, name);
    }
}

impl Backend for Fake {
    fn loaded(&mut self) -> bool {
        self.loaded
    }
    fn loadable(&mut self) -> bool {
        self.loadable
    }
    fn load(&mut self) -> io::Result<()> {
        if !self.loadable || self.load_fails {
            return Err(io::Error::from_raw_os_error(2));
        }
        self.loaded = true;
        Ok(())
    }
    fn unreachable(&mut self) -> Option<Unreachable> {
        self.unreachable.clone()
    }
    fn unload(&mut self) -> Result<(), UnloadError> {
        if self.unload_finds_nothing {
            return Err(UnloadError::NotFound(io::Error::from_raw_os_error(2)));
        }
        self.class
            .destroy_all(&mut self.topo)
            .map_err(|e| io::Error::from_raw_os_error(e.0))?;
        self.topo.drain(&mut self.class);
        self.loaded = false;
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
        let mut xml = String::from("<mesh>\n");
        let infos: Vec<_> = self
            .topo
            .providers
            .keys()
            .filter_map(|n| self.topo.info(n))
            .collect();
        conf_foreign_class(&mut xml, "DISK", infos.iter().map(|i| (i, (0, 0, 0)))).unwrap();
        self.class.conf_class(&mut xml).unwrap();
        xml.push_str("</mesh>\n");
        Ok(xml)
    }
    fn host_call(&mut self, call: &Call) -> Option<io::Result<Answer>> {
        let enoent = || Answer::Failed {
            errno: 2,
            text: String::new(),
        };
        let disk_of = |topo: &MemTopology, name: &str| topo.providers.get(name).map(|p| p.0);
        let answer = match call {
            Call::ProviderInfo { name } => match self.topo.info(name) {
                Some(i) => Answer::Provider {
                    mediasize: i.mediasize,
                    sectorsize: i.sectorsize,
                },
                None => enoent(),
            },
            Call::ProviderRead { name, offset, len }
            | Call::ProviderTouch { name, offset, len } => {
                let Some(d) = disk_of(&self.topo, name) else {
                    return Some(Ok(enoent()));
                };
                let data = self.topo.disks[d]
                    .sectors
                    .get(offset)
                    .cloned()
                    .unwrap_or_else(|| vec![0; *len as usize]);
                if matches!(call, Call::ProviderTouch { .. }) {
                    self.retaste(name);
                }
                Answer::Data(data)
            }
            Call::ProviderWrite { name, offset, data } => {
                let Some(d) = disk_of(&self.topo, name) else {
                    return Some(Ok(enoent()));
                };
                self.topo.disks[d].sectors.insert(*offset, data.clone());
                self.retaste(name);
                Answer::Done
            }
            _ => return None,
        };
        Some(Ok(answer))
    }
}

struct Outcome {
    code: i32,
    out: String,
    err: String,
}

fn geom(fake: &mut Fake, cmdline: &str) -> Outcome {
    let argv: Vec<String> = cmdline.split_whitespace().map(String::from).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut uuid = || Some(String::from("3b8a5e2c-8f1d-11ef-9b6a-0800275ad1c3"));
    let code = run::main(
        &argv,
        &mut Env {
            backend: fake,
            out: &mut out,
            err: &mut err,
            new_uuid: &mut uuid,
            providers: None,
            terminal: false,
        },
    );
    Outcome {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn ok(fake: &mut Fake, cmdline: &str) -> String {
    let o = geom(fake, cmdline);
    assert_eq!((o.code, o.err.as_str()), (0, ""), "{cmdline}");
    o.out
}

fn fails(fake: &mut Fake, cmdline: &str) -> (String, String) {
    let o = geom(fake, cmdline);
    assert_eq!(o.code, 1, "{cmdline}: {}", o.err);
    (o.out, o.err)
}

/// gmultipath(8)'s usage text, shared with the unit tests.
const USAGE: &str = include_str!("golden/usage.txt");

#[test]
fn usage_and_command_errors() {
    let mut f = Fake::new();
    assert_eq!(fails(&mut f, "gmultipath").1, USAGE);
    assert_eq!(fails(&mut f, "gmultipath help").1, USAGE);
    assert_eq!(
        fails(&mut f, "gmultipath frob").1,
        format!("gmultipath: Unknown command: frob.\n{USAGE}")
    );
    assert_eq!(
        fails(&mut f, "gmultipath -h").1,
        format!("gmultipath: Unknown command: -h.\n{USAGE}")
    );
    assert_eq!(
        fails(&mut f, "gmultipath create -x FRED md0").1,
        format!("gmultipath: illegal option -- x\n{USAGE}")
    );
    assert_eq!(
        fails(&mut f, "gmultipath create -A -A FRED md0").1,
        format!("gmultipath: Option 'A' specified twice.\n{USAGE}")
    );
    assert_eq!(
        fails(&mut f, "gmultipath rotate -vv FRED").1,
        format!("gmultipath: Option 'v' specified twice.\n{USAGE}")
    );
}

/// Issue 11 item 5: FreeBSD's kernel reads only `arg0` (and `arg1`), so `destroy FRED G9`
/// destroyed FRED and ignored G9; here the extras are refused before anything is sent.
#[test]
fn extra_operands_are_refused_with_the_usage_and_nothing_happens() {
    let mut f = Fake::new().disk("md", 2, MIB);
    ok(&mut f, "gmultipath create FRED md0 md1");
    let active = ok(&mut f, "gmultipath getactive FRED");
    for cmdline in [
        "gmultipath destroy FRED G9",
        "gmultipath stop FRED H",
        "gmultipath rotate FRED extra",
        "gmultipath getactive FRED FRED",
        "gmultipath configure -A FRED FRED",
        "gmultipath fail FRED md0 md1",
        "gmultipath restore FRED md0 md1",
        "gmultipath add FRED md0 md1",
        "gmultipath remove FRED md0 md1",
    ] {
        assert_eq!(
            fails(&mut f, cmdline),
            (
                String::new(),
                format!("gmultipath: Too many arguments.\n{USAGE}")
            ),
            "{cmdline}"
        );
    }
    assert_eq!(
        ok(&mut f, "gmultipath getactive FRED"),
        active,
        "not rotated"
    );
    assert_eq!(ok(&mut f, "gmultipath destroy -v FRED"), "Done.\n");
}

#[test]
fn unknown_program_and_class_names() {
    let mut f = Fake::new();
    assert_eq!(
        fails(&mut f, "xmultipath list").1,
        "xmultipath: Invalid utility name.\n"
    );
    assert_eq!(
        fails(&mut f, "gfoo list").1,
        "gfoo: Invalid class name 'foo'.\n"
    );
    let mut gone = Fake::new();
    gone.loaded = false;
    gone.loadable = false;
    assert_eq!(
        fails(&mut gone, "gmultipath list").1,
        "gmultipath: Invalid class name 'multipath'.\n"
    );
    assert!(fails(&mut f, "geom")
        .1
        .starts_with("usage: geom <class> <command> [options]\n"));
}

#[test]
fn list_without_the_class_loaded_says_try_load() {
    let mut f = Fake::new().disk("md", 2, MIB);
    f.loaded = false;
    assert_eq!(
        fails(&mut f, "gmultipath list").1,
        "gmultipath: Command 'list' not available; try 'load' first.\n"
    );
    assert_eq!(
        fails(&mut f, "gmultipath status").1,
        "gmultipath: Command 'status' not available; try 'load' first.\n"
    );
    assert_eq!(
        fails(&mut f, "gmultipath unload").1,
        "gmultipath: Command 'unload' not available; try 'load' first.\n"
    );
    assert_eq!(
        ok(&mut f, "gmultipath load -v"),
        "Module available.\nDone.\n"
    );
    assert!(f.loaded);
}

/// Issue 11 item 9: "not running" keeps FreeBSD's words and exit 1; a host that is busy or
/// refuses this user says so, with its own exit status, and `load` starts nothing.
#[test]
fn busy_and_denied_are_told_apart_from_not_running() {
    let mut f = Fake::new().disk("md", 2, MIB);
    f.loaded = false;
    for (why, code, text) in [
        (
            Unreachable::Busy("gmultipathd at /s".into()),
            75,
            "gmultipath: gmultipathd at /s is busy (too many connections); try again later.\n",
        ),
        (
            Unreachable::Denied("gmultipathd at /s".into()),
            77,
            "gmultipath: gmultipathd at /s: Permission denied.\n",
        ),
    ] {
        f.unreachable = Some(why);
        for cmdline in [
            "gmultipath status",
            "gmultipath list",
            "gmultipath unload",
            "gmultipath load",
            "gmultipath fail FRED md0",
            "gmultipath create FRED md0 md1",
        ] {
            let o = geom(&mut f, cmdline);
            assert_eq!((o.code, o.err.as_str()), (code, text), "{cmdline}");
            assert!(!f.loaded, "{cmdline}: nothing started");
        }
        assert_eq!(fails(&mut f, "gmultipath help").1, USAGE);
    }
    f.unreachable = None;
    assert_eq!(
        fails(&mut f, "gmultipath status").1,
        "gmultipath: Command 'status' not available; try 'load' first.\n"
    );
}

#[test]
fn unload_of_a_module_gone_meanwhile_says_it_could_not_find_it() {
    // geom(8) checks that the module is loaded, then kldfinds it again to unload it.
    let mut f = Fake::new();
    f.unload_finds_nothing = true;
    assert_eq!(
        fails(&mut f, "gmultipath unload").1,
        "gmultipath: Could not find module: No such file or directory.\n"
    );
}

#[test]
fn create_autoloads_and_says_done_with_v() {
    let mut f = Fake::new().disk("md", 2, MIB);
    f.loaded = false;
    assert_eq!(ok(&mut f, "gmultipath create -v FRED md0 md1"), "Done.\n");
    assert!(f.loaded);
    f.loaded = false;
    f.load_fails = true;
    assert_eq!(
        fails(&mut f, "gmultipath create FRED md0 md1").1,
        "gmultipath: cannot load geom_multipath: No such file or directory\n"
    );
}

#[test]
fn list_status_and_getactive_golden_text() {
    let mut f = Fake::new().disk("md", 2, MIB);
    ok(&mut f, "gmultipath create FRED md0 md1");
    assert_eq!(
        ok(&mut f, "gmultipath list"),
        include_str!("golden/fred_list.txt")
    );
    assert_eq!(
        ok(&mut f, "gmultipath status"),
        "          Name   Status  Components
multipath/FRED  OPTIMAL  md0 (ACTIVE)
                         md1 (PASSIVE)
"
    );
    assert_eq!(
        ok(&mut f, "gmultipath status -s"),
        "multipath/FRED  OPTIMAL  md0 (ACTIVE)\nmultipath/FRED  OPTIMAL  md1 (PASSIVE)\n"
    );
    assert_eq!(
        ok(&mut f, "gmultipath status -g"),
        "Name   Status  Components\nFRED  OPTIMAL  md0 (ACTIVE)\n               md1 (PASSIVE)\n"
    );
    assert_eq!(ok(&mut f, "gmultipath getactive FRED"), "md0\n");
    assert_eq!(
        ok(&mut f, "gmultipath list /dev/FRED").lines().next(),
        Some("Geom name: FRED")
    );
    let (out, err) = fails(&mut f, "gmultipath list FRED BARNEY");
    assert!(
        out.starts_with("Geom name: FRED\n"),
        "FRED printed before the error"
    );
    assert_eq!(
        err,
        "gmultipath: Class 'MULTIPATH' does not have an instance named 'BARNEY'.\n"
    );
    assert_eq!(
        fails(&mut f, "gmultipath status BARNEY"),
        (String::new(), "gmultipath: No such geom: BARNEY.\n".into())
    );
}

#[test]
fn configure_extensions_are_listed_only_when_set_and_bad_values_refused() {
    let mut f = Fake::new().disk("md", 2, MIB);
    ok(&mut f, "gmultipath create FRED md0 md1");
    let plain = ok(&mut f, "gmultipath list FRED");
    ok(&mut f, "gmultipath configure FRED");
    assert_eq!(
        ok(&mut f, "gmultipath list FRED"),
        plain,
        "nothing named, nothing shown"
    );
    ok(
        &mut f,
        "gmultipath configure -c 5 -r 1 -f deferred:30 -q 10 -s round-robin:4 FRED",
    );
    let listed = ok(&mut f, "gmultipath list FRED");
    assert!(
        listed.contains(
            "State: OPTIMAL\nCheckInterval: 5\nReinstate: 1\nFailback: deferred:30\n\
             QueueTimeout: 10\nSelector: round-robin:4\nProviders:\n"
        ),
        "{listed}"
    );
    assert_eq!(
        fails(&mut f, "gmultipath configure -s fastest -q 0 FRED"),
        (
            String::new(),
            "gmultipath: Invalid selector value 'fastest'\n".into()
        )
    );
    assert_eq!(
        ok(&mut f, "gmultipath list FRED"),
        listed,
        "nothing changed"
    );
    ok(&mut f, "gmultipath configure -q default -P FRED");
    assert!(!ok(&mut f, "gmultipath list FRED").contains("QueueTimeout"));
}

#[test]
fn verb_errors_reach_stderr_with_the_program_name() {
    let mut f = Fake::new().disk("md", 2, MIB);
    ok(&mut f, "gmultipath create FRED md0 md1");
    let cases = [
        (
            "gmultipath create FRED md0",
            "gmultipath: Device FRED already exist\n",
        ),
        (
            "gmultipath create BARNEY",
            "gmultipath: wrong number of arguments.\n",
        ),
        (
            "gmultipath add BARNEY md0",
            "gmultipath: Device BARNEY not found\n",
        ),
        (
            "gmultipath add FRED md0",
            "gmultipath: provider md0 is already there\n",
        ),
        (
            "gmultipath fail FRED md9",
            "gmultipath: Provider md9 not found\n",
        ),
        (
            "gmultipath rotate BARNEY",
            "gmultipath: Device BARNEY is invalid\n",
        ),
        (
            "gmultipath destroy BARNEY",
            "gmultipath: Device BARNEY is invalid\n",
        ),
        (
            "gmultipath stop BARNEY",
            "gmultipath: Device BARNEY is invalid\n",
        ),
        (
            "gmultipath configure -A BARNEY",
            "gmultipath: Device BARNEY is invalid\n",
        ),
        (
            "gmultipath getactive BARNEY",
            "gmultipath: Device BARNEY is invalid\n",
        ),
        (
            "gmultipath remove FRED md9",
            "gmultipath: Provider md9 not found\n",
        ),
    ];
    for (cmd, err) in cases {
        assert_eq!(
            fails(&mut f, cmd),
            (String::new(), err.to_string()),
            "{cmd}"
        );
    }
    let (_, err) = fails(&mut f, "gmultipath create ABCDEFGHIJKLMNOPQ md0");
    assert_eq!(
        err,
        "gmultipath: Device ABCDEFGHIJKLMNOPQ is invalid: name is longer than 15 bytes\n"
    );
}

/// Issue 11 item 8: a UTF-8 name is counted in bytes (the label holds 15 and a NUL), shown
/// once-encoded by `status` and `list`, and found by its own name.
#[test]
fn utf8_names_are_counted_in_bytes_shown_and_found_as_written() {
    let mut f = Fake::new().disk("md", 2, MIB);
    let (_, err) = fails(&mut f, "gmultipath create ééééééééé md0");
    assert_eq!(
        err,
        "gmultipath: Device ééééééééé is invalid: name is longer than 15 bytes\n"
    );
    ok(&mut f, "gmultipath create ä日本 md0 md1");
    assert_eq!(
        ok(&mut f, "gmultipath status ä日本"),
        // printf pads by bytes: the name is 18 bytes wide.
        "              Name   Status  Components\n\
         multipath/ä日本  OPTIMAL  md0 (ACTIVE)\n\
         \x20                            md1 (PASSIVE)\n"
    );
    assert!(ok(&mut f, "gmultipath list ä日本").starts_with("Geom name: ä日本\n"));
    assert_eq!(ok(&mut f, "gmultipath getactive ä日本"), "md0\n");
    ok(&mut f, "gmultipath destroy ä日本");
}

#[test]
fn prefer_prints_its_error_twice() {
    let mut f = Fake::new().disk("md", 2, MIB);
    ok(&mut f, "gmultipath create FRED md0 md1");
    assert_eq!(
        fails(&mut f, "gmultipath prefer FRED md9").1,
        "Can't set FRED preferred provider to md9: Provider md9 not found.\n\
         gmultipath: Provider md9 not found\n"
    );
    assert_eq!(
        fails(&mut f, "gmultipath prefer FRED").1,
        "gmultipath: Usage: prefer GEOM PROVIDER\n"
    );
    assert_eq!(ok(&mut f, "gmultipath prefer -v FRED md1"), "Done.\n");
    assert_eq!(ok(&mut f, "gmultipath getactive FRED"), "md1\n");
}

#[test]
fn label_then_taste_builds_an_automatic_geom() {
    let mut f = Fake::new().disk("md", 2, MIB);
    assert_eq!(ok(&mut f, "gmultipath label -v FRED md0 md1"), "Done.\n");
    let out = ok(&mut f, "gmultipath list FRED");
    assert!(out.contains("Type: AUTOMATIC\n"), "{out}");
    assert!(out.contains("UUID: 3b8a5e2c-8f1d-11ef-9b6a-0800275ad1c3\n"));
    assert!(
        out.contains("   Mediasize: 1048064 (1.0M)\n"),
        "label sector not exported"
    );
    assert_eq!(
        ok(&mut f, "gmultipath status"),
        "          Name   Status  Components\nmultipath/FRED  OPTIMAL  md0 (ACTIVE)\n                         md1 (PASSIVE)\n"
    );
}

#[test]
fn label_warns_about_a_provider_on_another_disk_and_checks_sizes() {
    let mut f = Fake::new()
        .disk("md", 1, MIB)
        .disk("other", 1, MIB)
        .disk("big", 1, 2 * MIB);
    let o = geom(&mut f, "gmultipath label FRED md0 other0");
    assert_eq!(o.code, 0);
    assert_eq!(
        o.err,
        "No metadata found on other0. It is not a path of md0.\n"
    );
    let (_, err) = fails(&mut f, "gmultipath label BARNEY other0 big0");
    assert_eq!(err, "gmultipath: big0 media size 2097152 different.\n");
    let (_, err) = fails(&mut f, "gmultipath label BARNEY nowhere");
    assert_eq!(
        err,
        "gmultipath: cannot get information about nowhere: No such file or directory.\n"
    );
    let (_, err) = fails(&mut f, "gmultipath label BARNEY");
    assert_eq!(err, "gmultipath: wrong number of arguments.\n");
}

#[test]
fn clear_needs_a_label_and_keeps_going() {
    let mut f = Fake::new().disk("md", 2, MIB).disk("other", 1, MIB);
    ok(&mut f, "gmultipath label FRED md0 md1");
    ok(&mut f, "gmultipath stop FRED");
    let o = geom(&mut f, "gmultipath clear other0 md0");
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Can't clear metadata on other0: Invalid argument.\ngmultipath: Not fully done.\n"
    );
    assert!(
        f.topo.label(0).is_none(),
        "md0's label was cleared after the failure"
    );
    assert_eq!(
        fails(&mut f, "gmultipath clear").1,
        "gmultipath: Too few arguments.\n"
    );
}

#[test]
fn destroy_then_unload() {
    let mut f = Fake::new().disk("md", 2, MIB);
    ok(&mut f, "gmultipath label FRED md0 md1");
    assert_eq!(ok(&mut f, "gmultipath destroy -v FRED"), "Done.\n");
    assert!(f.topo.label(0).is_none(), "destroy erased the label");
    assert_eq!(ok(&mut f, "gmultipath list"), "");
    assert_eq!(ok(&mut f, "gmultipath status"), "");
    ok(&mut f, "gmultipath unload");
    assert!(!f.loaded);
}

#[test]
fn geom_multipath_form_uses_geom_as_the_program_name() {
    let mut f = Fake::new().disk("md", 2, MIB);
    assert_eq!(
        fails(&mut f, "geom multipath rotate BARNEY").1,
        "geom: Device BARNEY is invalid\n"
    );
    assert!(fails(&mut f, "geom multipath")
        .1
        .starts_with("usage: geom multipath create [-vAR] name prov ...\n"));
}

#[test]
fn gnop_usage_and_number_errors() {
    let mut f = Fake::new().disk("md", 1, MIB);
    let (_, err) = fails(&mut f, "gnop");
    assert!(
        err.starts_with("usage: gnop create [-v] [-c count_until_fail]"),
        "{err}"
    );
    assert_eq!(
        fails(&mut f, "gnop create -o abc md0").1,
        "gnop: Invalid value for 'o' argument: Invalid argument\n"
    );
}

#[test]
fn expand_number_follows_libutil() {
    use gmultipath::run::expand_number;
    assert_eq!(expand_number("512"), Some(512));
    assert_eq!(expand_number("1k"), Some(1024));
    assert_eq!(expand_number("2M"), Some(2 << 20));
    assert_eq!(expand_number("1gb"), Some(1 << 30));
    assert_eq!(expand_number("0x10"), Some(16));
    assert_eq!(expand_number("010"), Some(8));
    assert_eq!(expand_number("-1"), Some(-1));
    assert_eq!(expand_number(""), Some(0));
    assert_eq!(expand_number("12q"), None);
    assert_eq!(expand_number("1kk"), None);
    assert_eq!(expand_number("16e"), None, "overflow");
}
