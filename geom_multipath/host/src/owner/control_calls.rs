//! Control calls: what the owner answers on the control socket — gctl requests to the
//! MULTIPATH and NOP classes, the confxml (with the counters when asked), the counters as
//! Prometheus text and their reset, sysctl reads and writes (with the per-provider
//! `io_timeout` overrides), unload, and the tools' reads and writes of a provider.
//!
//! Each call runs to its end on the owner thread; device I/O it needs runs on a helper
//! thread with a deadline.

use super::*;

/// A setting the admin states per provider, as `<name>.<provider>` (seconds, 0 to 86400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerPath {
    /// `kern.geom.multipath.io_timeout.<provider>`: overrides the knob for that provider.
    IoTimeout,
    /// `kern.geom.multipath.quiesce_time.<provider>`: how long after its path failed at a
    /// deadline a write still out on it may land (none by default: wait for its answer).
    QuiesceTime,
}

impl PerPath {
    /// Every per-provider setting, in listing order.
    pub const ALL: [PerPath; 2] = [PerPath::IoTimeout, PerPath::QuiesceTime];

    /// The name in front of `.<provider>`.
    pub fn base(self) -> &'static str {
        match self {
            PerPath::IoTimeout => "kern.geom.multipath.io_timeout",
            PerPath::QuiesceTime => "kern.geom.multipath.quiesce_time",
        }
    }

    /// The setting and provider `name` stands for, if it is `<base>.<provider>` (the
    /// provider may be empty: the caller refuses it).
    pub fn parse(name: &str) -> Option<(PerPath, &str)> {
        PerPath::ALL.into_iter().find_map(|k| {
            name.strip_prefix(k.base())
                .and_then(|rest| rest.strip_prefix('.'))
                .map(|provider| (k, provider))
        })
    }

    /// Reads a value as written: seconds, in `io_timeout`'s range.
    pub fn check(value: &str) -> Result<u32, sysctl::SetError> {
        let mut check = Values::default();
        check.set_text(Knob::IoTimeout, value)?;
        Ok(check.io_timeout())
    }
}

/// The most bytes one provider read or write for a tool (label, clear) may move: well
/// within one control frame.
pub const PROVIDER_IO_MAX: u64 = 1 << 20;

/// The NOP class's one knob.
pub const NOP_DEBUG: &str = "kern.geom.nop.debug";

/// What a sysctl read of `name` answers from `all` knobs, as sysctl(8) walks the tree:
/// everything for an empty name, the knob itself for a leaf, every knob under a node, and
/// ENOENT for a name that is neither.
pub fn select_knobs(all: Vec<KnobAnswer>, name: &str) -> Answer {
    let under = format!("{name}.");
    let chosen: Vec<KnobAnswer> = if name.is_empty() {
        all
    } else if let Some(leaf) = all.iter().find(|k| k.name == name) {
        vec![leaf.clone()]
    } else {
        all.into_iter()
            .filter(|k| k.name.starts_with(&under))
            .collect()
    };
    if chosen.is_empty() {
        failed(Errno(libc::ENOENT))
    } else {
        Answer::Sysctl(chosen)
    }
}

impl Owner {
    /// Answers one control request.
    pub fn call(&mut self, call: Call) -> Answer {
        match call {
            Call::Ping => Answer::Pong {
                pid: std::process::id(),
            },
            Call::Ctl(mut req) => {
                self.attach_nbd_args(&req);
                self.ctl(&mut req);
                Answer::Ctl(Reply::from_request(&req))
            }
            Call::ConfXml => Answer::Text(self.confxml(false)),
            Call::StatsXml => Answer::Text(self.confxml(true)),
            Call::StatsReset { geom } => self.reset_stats(&geom),
            Call::Metrics => Answer::Text(self.metrics()),
            Call::SysctlGet { name } => self.sysctl_get(&name),
            Call::SysctlSet { name, value } => self.sysctl_set(&name, &value),
            Call::Unload => self.unload(),
            Call::Probes => Answer::Counters(self.console.probes()),
            Call::Messages { since } => {
                let (next, lines) = self.console.since(since);
                Answer::Messages { next, lines }
            }
            Call::ProviderInfo { name } => {
                self.attach_nbd(&name);
                match self.providers.info(&name) {
                    Some(i) => Answer::Provider {
                        mediasize: i.mediasize,
                        sectorsize: i.sectorsize,
                    },
                    None => failed(Errno(libc::ENOENT)),
                }
            }
            Call::ProviderRead { name, offset, len } => {
                self.attach_nbd(&name);
                self.provider_io(&name, offset, ProviderOp::Read(len as usize), false)
            }
            Call::ProviderTouch { name, offset, len } => {
                self.attach_nbd(&name);
                self.provider_io(&name, offset, ProviderOp::Read(len as usize), true)
            }
            Call::ProviderWrite { name, offset, data } => {
                self.attach_nbd(&name);
                self.provider_io(&name, offset, ProviderOp::Write(data), true)
            }
        }
    }

    /// Runs a gctl request for the class it names.
    pub(super) fn ctl(&mut self, req: &mut Request) {
        let class = req.ascii("class").unwrap_or_default();
        match class.as_str() {
            "MULTIPATH" => self.with_topology(|c, topo| c.ctl(topo, req)),
            "NOP" => self.with_nop(|nop, host| nop.ctl(host, req)),
            _ => req.error(CtlError::Other(format!("Class not found: \"{class}\""))),
        }
    }

    /// `kern.geom.confxml`: the DISK providers, then the classes; with the multipath
    /// class's counters when `stats` (an extension, only when asked).
    pub fn confxml(&mut self, stats: bool) -> String {
        let mut xml = String::from("<mesh>\n");
        let disks: Vec<(ProviderInfo, (i32, i32, i32))> = self
            .providers
            .iter()
            .filter(|(i, _)| !self.providers.is_stacked(&i.name))
            .map(|(i, c)| (i.clone(), (c.r, c.w, c.e)))
            .collect();
        let _ = conf_foreign_class(&mut xml, "DISK", disks.iter().map(|(i, c)| (i, *c)));
        let view = NopView(&self.providers);
        let _ = self.nop.conf_class(&view, &mut xml);
        if stats {
            let now = self.time_at(Instant::now());
            self.class.observe_states(now);
            let _ = self.class.conf_class_stats(&mut xml);
        } else {
            let _ = self.class.conf_class(&mut xml);
        }
        xml.push_str("</mesh>\n");
        xml
    }

    /// The class's counters in the Prometheus text format, as of now.
    pub fn metrics(&mut self) -> String {
        let now = self.time_at(Instant::now());
        self.class.observe_states(now);
        let mut text = String::new();
        let _ = self.class.write_metrics(&mut text);
        text
    }

    /// Zeroes the counters of geom `name`, or of every geom when `name` is empty.
    fn reset_stats(&mut self, name: &str) -> Answer {
        let now = self.time_at(Instant::now());
        self.class.observe_states(now);
        if name.is_empty() {
            self.class.reset_stats(None);
            return Answer::Done;
        }
        match self.class.find_geom(name) {
            Some(g) => {
                self.class.reset_stats(Some(g));
                Answer::Done
            }
            None => failed(Errno(libc::ENOENT)),
        }
    }

    /// Rewrites the counters to `file` periodically from now on (`--metrics-file`).
    pub fn set_metrics_file(&mut self, file: metrics_file::MetricsFile) {
        self.metrics_file = Some(file);
    }

    /// When the metrics file is next due, if there is one.
    pub(super) fn metrics_due(&self) -> Option<Instant> {
        self.metrics_file.as_ref().map(|m| m.due())
    }

    /// Rewrites the metrics file if it is due at `now`.
    pub(super) fn write_metrics_if_due(&mut self, now: Instant) {
        if let Some(mut file) = self.metrics_file.take() {
            file.write_if_due(now, || self.metrics());
            self.metrics_file = Some(file);
        }
    }

    pub(super) fn knob_answer(&self, t: &sysctl::Tunable, old: Option<u32>) -> KnobAnswer {
        KnobAnswer {
            name: t.name.to_string(),
            value: u64::from(self.class.tunables().get(t.knob)),
            old: old.map(u64::from),
            description: t.description.to_string(),
        }
    }

    /// The providers with `kind` set, and the values.
    pub(super) fn per_path(&self, kind: PerPath) -> Vec<(String, u32)> {
        let set: Vec<(&str, u32)> = match kind {
            PerPath::IoTimeout => self.class.io_timeout_overrides().collect(),
            PerPath::QuiesceTime => self.class.quiesce_times().collect(),
        };
        set.into_iter().map(|(p, s)| (p.to_string(), s)).collect()
    }

    pub(super) fn override_answer(
        &self,
        kind: PerPath,
        provider: &str,
        old: Option<u32>,
    ) -> KnobAnswer {
        let value = self
            .per_path(kind)
            .into_iter()
            .find(|(name, _)| name == provider)
            .map_or(0, |(_, secs)| secs);
        let what = match kind {
            PerPath::IoTimeout => "io_timeout for requests to",
            PerPath::QuiesceTime => "seconds a write may still land after its path failed:",
        };
        KnobAnswer {
            name: format!("{}.{provider}", kind.base()),
            value: u64::from(value),
            old: old.map(u64::from),
            description: format!("{what} {provider}"),
        }
    }

    pub(super) fn nop_debug_answer(&self, old: Option<u32>) -> KnobAnswer {
        KnobAnswer {
            name: NOP_DEBUG.to_string(),
            value: u64::from(self.nop.debug),
            old: old.map(u64::from),
            description: "Debug level".to_string(),
        }
    }

    /// Every knob, in sysctl -a order: the class's, its per-path overrides, the NOP class's.
    pub(super) fn all_knobs(&self) -> Vec<KnobAnswer> {
        let mut all: Vec<KnobAnswer> = sysctl::TABLE
            .iter()
            .map(|t| self.knob_answer(t, None))
            .collect();
        for kind in PerPath::ALL {
            for (p, _) in self.per_path(kind) {
                all.push(self.override_answer(kind, &p, None));
            }
        }
        all.push(self.nop_debug_answer(None));
        all
    }

    pub(super) fn sysctl_get(&self, name: &str) -> Answer {
        select_knobs(self.all_knobs(), name)
    }

    /// Sets `kind` for provider `provider` (the tunables file may name one that appears
    /// later); returns the value that applied before.
    pub fn set_per_path(
        &mut self,
        kind: PerPath,
        provider: &str,
        value: &str,
    ) -> Result<u32, sysctl::SetError> {
        let secs = PerPath::check(value)?;
        Ok(match kind {
            PerPath::IoTimeout => {
                let before = self.class.io_timeout(provider);
                self.class.set_io_timeout_override(provider, Some(secs));
                before
            }
            PerPath::QuiesceTime => {
                let before = self.class.quiesce_time(provider);
                self.class.set_quiesce_time(provider, Some(secs));
                before
            }
        })
    }

    pub(super) fn sysctl_set(&mut self, name: &str, value: &str) -> Answer {
        if let Some((kind, provider)) = PerPath::parse(name) {
            // Like sysctl(8) on an oid that does not exist: a provider this daemon does not
            // know has no such setting (the tunables file may still name one ahead).
            if self.providers.info(provider).is_none() {
                return failed(Errno(libc::ENOENT));
            }
            return match self.set_per_path(kind, provider, value) {
                Ok(old) => Answer::Sysctl(vec![self.override_answer(kind, provider, Some(old))]),
                Err(e) => Answer::Failed {
                    errno: libc::EINVAL,
                    text: e.to_string(),
                },
            };
        }
        if name == NOP_DEBUG {
            return match value.trim().parse::<u32>() {
                Ok(v) => {
                    let old = std::mem::replace(&mut self.nop.debug, v);
                    Answer::Sysctl(vec![self.nop_debug_answer(Some(old))])
                }
                Err(_) => failed(Errno(libc::EINVAL)),
            };
        }
        let Some(t) = sysctl::lookup(name).filter(|t| t.name == name) else {
            // A node is not a leaf; anything else does not exist.
            return match select_knobs(self.all_knobs(), name) {
                Answer::Sysctl(_) => failed(Errno(libc::ENOTDIR)),
                other => other,
            };
        };
        match self.class.tunables_mut().set_text(t.knob, value) {
            Ok(old) => Answer::Sysctl(vec![self.knob_answer(t, Some(old))]),
            Err(e) => Answer::Failed {
                errno: libc::EINVAL,
                text: e.to_string(),
            },
        }
    }

    /// kldunload: refused while a multipath provider is open; otherwise every geom goes
    /// (labels stay) and the loop ends.
    pub(super) fn unload(&mut self) -> Answer {
        match self.with_topology(|class, topo| class.destroy_all(topo)) {
            Ok(()) => {
                let nops: Vec<String> = self.nop.providers().map(|i| i.name).collect();
                for name in nops.iter().rev() {
                    let _ = self.with_nop(|nop, host| nop.destroy_geom(host, name));
                }
                self.stopping = true;
                Answer::Done
            }
            // FreeBSD's first line stays the tool's; the text says which provider holds
            // it, for the tool to add as a second line.
            Err(e) => Answer::Failed {
                errno: e.0,
                text: self.open_providers(),
            },
        }
    }

    /// `multipath/FRED is open (r1w1e0).` for each open multipath provider, one a line.
    pub(super) fn open_providers(&self) -> String {
        self.class
            .geoms()
            .filter_map(|g| self.class.geom(g))
            .filter(|v| v.access_counts() != (0, 0, 0))
            .map(|v| {
                let (r, w, e) = v.access_counts();
                format!("multipath/{} is open (r{r}w{w}e{e}).", v.name())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A provider read or write on behalf of a tool (label, clear); `closes_for_write`
    /// opens it for writing, so that closing it re-tastes it.
    pub(super) fn provider_io(
        &mut self,
        name: &str,
        offset: u64,
        op: ProviderOp,
        closes_for_write: bool,
    ) -> Answer {
        let Some(info) = self.providers.info(name) else {
            return failed(Errno(libc::ENOENT));
        };
        // One answer frame holds at most PROVIDER_IO_MAX bytes; a request for more, for
        // nothing, or past the end is the caller's mistake, said as such.
        let len = match &op {
            ProviderOp::Read(len) => *len as u64,
            ProviderOp::Write(data) => data.len() as u64,
        };
        if len == 0
            || len > PROVIDER_IO_MAX
            || offset
                .checked_add(len)
                .is_none_or(|end| end > info.mediasize)
        {
            return Answer::Failed {
                errno: libc::EINVAL,
                text: format!(
                    "{name}: {len} bytes at {offset}: the length must be 1 to \
                     {PROVIDER_IO_MAX} bytes within the provider's {} bytes",
                    info.mediasize
                ),
            };
        }
        let w = i32::from(closes_for_write);
        match self.providers.access(name, Consumer::Control, 1, w, 0) {
            Ok(o) => self.queue_retastes(o.retaste),
            Err(e) => return failed(e),
        }
        let device = self.providers.device(name);
        let result = match device {
            None => Err(Errno::ENXIO),
            Some(d) => blocking(CONTROL_IO_DEADLINE, move || match op {
                ProviderOp::Read(len) => {
                    let mut buf = IoBuf::zeroed(len);
                    d.read_at(buf.as_mut_slice(), offset)
                        .map(|()| Answer::Data(buf.as_slice().to_vec()))
                }
                ProviderOp::Write(data) => d
                    .write_at(IoBuf::from_slice(&data).as_slice(), offset)
                    .and_then(|()| d.flush())
                    .map(|()| Answer::Done),
            }),
        };
        if let Ok(o) = self.providers.access(name, Consumer::Control, -1, -w, 0) {
            self.queue_retastes(o.retaste);
        }
        self.drain();
        result.unwrap_or_else(failed)
    }

    /// Gives geom `name` (now, or when it appears) a `configure` setting from the tunables
    /// file; the value was checked when the file was read.
    pub fn preset_geom(
        &mut self,
        name: &str,
        setting: geom_multipath::settings::Setting,
        value: &str,
    ) {
        if self.class.preset(name, setting, value).is_err() {
            tracing::warn!("{name}: invalid {} value '{value}'", setting.param());
        }
        self.drain();
    }

    /// Replaces the tunables (config file at start).
    pub fn set_tunable(&mut self, knob: Knob, value: u32) -> Result<u32, sysctl::SetError> {
        self.class.tunables_mut().set(knob, value)
    }
}

pub(super) enum ProviderOp {
    Read(usize),
    Write(Vec<u8>),
}

pub(super) fn failed(e: Errno) -> Answer {
    Answer::Failed {
        errno: e.0,
        text: geom_multipath_sys::strerror(e.0),
    }
}
