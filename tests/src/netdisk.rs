//! A remote disk reached over two network links, for the network-path campaign: one
//! image served by two `nbdkit` processes inside a private network namespace, each bound
//! to the far end of its own veth link, as a dual-controller array on two fabrics would
//! be. Each link can be cut the ways a real network fails (LINUX-HOST.md):
//!
//! * the link goes down (`ip link set … down`),
//! * every packet is dropped (`tc qdisc … pfifo limit 0`),
//! * the far side silently drops (iptables DROP) or resets connections (iptables REJECT
//!   with tcp-reset),
//! * the server on that link dies, and later comes back on the same address.
//!
//! The guard removes the namespace (and with it both links and the firewall rules) and
//! kills the servers in `Drop`, so a failed assertion leaks nothing.

use std::net::{SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{run, wait_until};

/// The port the servers listen on (the NBD default).
pub const PORT: u16 = 10809;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// How a link is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The host side of the link is down.
    LinkDown,
    /// Every packet leaving the host on the link is dropped.
    DropAll,
    /// The far side drops everything arriving on the link.
    Silence,
    /// The far side answers every TCP segment with a reset.
    Reset,
}

/// One link: a veth pair with the host end here and the far end in the namespace.
struct Link {
    host_if: String,
    far_if: String,
    host_ip: String,
    far_ip: String,
    server: Option<Child>,
}

/// The remote disk and its two links.
pub struct NetDisk {
    ns: String,
    image: PathBuf,
    links: Vec<Link>,
}

fn ip(args: &[&str]) {
    let out = run(Path::new("ip"), args, &[]);
    assert_eq!(out.code, 0, "ip {}: {}", args.join(" "), out.stderr);
}

impl NetDisk {
    /// Serves `image` over two links from a new namespace.
    pub fn serve(image: &Path) -> NetDisk {
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // Unique per process and per disk: names (≤ 15 bytes) and /30 subnets.
        let tag = format!("{}{n}", pid % 100_000);
        let ns = format!("gmp-net-{pid}-{n}");
        let net = (64 + pid % 64, n % 256);
        ip(&["netns", "add", &ns]);
        let mut disk = NetDisk {
            ns,
            image: image.to_path_buf(),
            links: Vec::new(),
        };
        disk.in_ns("ip", &["link", "set", "lo", "up"]);
        for i in 0..2u32 {
            let link = Link {
                host_if: format!("gm{tag}{i}h"),
                far_if: format!("gm{tag}{i}f"),
                host_ip: format!("10.{}.{}.{}", net.0, net.1, 4 * i + 1),
                far_ip: format!("10.{}.{}.{}", net.0, net.1, 4 * i + 2),
                server: None,
            };
            ip(&[
                "link",
                "add",
                &link.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &link.far_if,
            ]);
            ip(&["link", "set", &link.far_if, "netns", &disk.ns]);
            ip(&[
                "addr",
                "add",
                &format!("{}/30", link.host_ip),
                "dev",
                &link.host_if,
            ]);
            ip(&["link", "set", &link.host_if, "up"]);
            disk.in_ns(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{}/30", link.far_ip),
                    "dev",
                    &link.far_if,
                ],
            );
            disk.in_ns("ip", &["link", "set", &link.far_if, "up"]);
            disk.links.push(link);
        }
        for i in 0..2 {
            disk.start_server(i);
        }
        disk
    }

    /// Runs `program args` inside the namespace; panics on failure.
    fn in_ns(&self, program: &str, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.ns, program];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// `nbd://far-address:port/` for link `i`.
    pub fn uri(&self, i: usize) -> String {
        format!("nbd://{}:{PORT}/", self.links[i].far_ip)
    }

    fn address(&self, i: usize) -> SocketAddrV4 {
        SocketAddrV4::new(self.links[i].far_ip.parse().expect("ipv4"), PORT)
    }

    /// Starts the server of link `i` and waits until it accepts connections.
    pub fn start_server(&mut self, i: usize) {
        assert!(self.links[i].server.is_none(), "server {i} already runs");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "nbdkit",
                "--foreground",
                "--exit-with-parent",
            ])
            .args(["-i", &self.links[i].far_ip, "-p", &PORT.to_string()])
            // One thread per connection: nbdkit 1.32 (Debian 12) can abort on
            // `connections.c: raw_send_socket: Assertion 'sock >= 0'` when one of its threads
            // sends a reply on a connection another thread has just closed after the client
            // went away, which is exactly what fencing a path does. A dead server would
            // leave the path unable to come back, for a reason outside the daemon.
            .args(["-t", "1"])
            .arg("file")
            .arg(format!("file={}", self.image.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting nbdkit (is it installed? .ci/run installs it)");
        self.links[i].server = Some(child);
        let addr = self.address(i);
        wait_until("nbdkit to listen", || {
            TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok()
        });
    }

    /// Kills the server of link `i` (SIGKILL: no goodbye to its clients).
    pub fn kill_server(&mut self, i: usize) {
        if let Some(mut child) = self.links[i].server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Cuts link `i` the given way.
    pub fn cut(&self, i: usize, how: Cut) {
        self.apply(i, how, true);
    }

    /// Undoes `cut(i, how)`.
    pub fn heal(&self, i: usize, how: Cut) {
        self.apply(i, how, false);
    }

    fn apply(&self, i: usize, how: Cut, on: bool) {
        let link = &self.links[i];
        let far = link.far_if.as_str();
        match how {
            Cut::LinkDown => ip(&["link", "set", &link.host_if, if on { "down" } else { "up" }]),
            Cut::DropAll => {
                let verb = if on { "add" } else { "del" };
                let mut args = vec!["qdisc", verb, "dev", &link.host_if, "root"];
                if on {
                    args.extend(["pfifo", "limit", "0"]);
                }
                let out = run(Path::new("tc"), &args, &[]);
                assert_eq!(out.code, 0, "tc {}: {}", args.join(" "), out.stderr);
            }
            Cut::Silence | Cut::Reset => {
                let op = if on { "-I" } else { "-D" };
                let mut rule = vec![op, "INPUT", "-i", far, "-p", "tcp", "-j"];
                if how == Cut::Silence {
                    rule.push("DROP");
                } else {
                    rule.extend(["REJECT", "--reject-with", "tcp-reset"]);
                }
                self.in_ns("iptables", &rule);
            }
        }
    }

    /// `true` when the tools this needs are installed (`ip`, `tc`, `iptables`, `nbdkit`);
    /// otherwise says which is missing.
    pub fn available() -> bool {
        for tool in ["ip", "tc", "iptables", "nbdkit"] {
            let found = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
                .unwrap_or(false);
            if !found {
                println!("SKIPPED: {tool} is not installed (.ci/run installs it)");
                return false;
            }
        }
        true
    }
}

impl Drop for NetDisk {
    fn drop(&mut self) {
        for i in 0..self.links.len() {
            self.kill_server(i);
        }
        // Deleting the namespace takes the far ends with it, and a veth pair dies with
        // either end; the firewall rules live in the namespace.
        let _ = run(Path::new("ip"), &["netns", "del", &self.ns], &[]);
        for link in &self.links {
            let _ = run(Path::new("ip"), &["link", "del", &link.host_if], &[]);
        }
    }
}
