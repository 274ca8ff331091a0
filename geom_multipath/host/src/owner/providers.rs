//! The host's share of GEOM: the providers it knows (block devices found in sysfs, and the
//! NOP providers it makes), who holds them open with which access counts, and the open
//! device behind each provider while anyone holds it.
//!
//! Access follows `g_access`: counts are per consumer (a multipath path, a NOP stacked on
//! the provider, a control-socket request); a consumer may not take write access while
//! another holds the provider exclusively, nor exclusive access while another writes
//! (EPERM). The device is opened when the first count is taken — with O_EXCL while any
//! consumer is exclusive, which keeps mounts and mkfs off a path — and closed when the last
//! is dropped. When the last writer lets go, the provider is due a re-taste, exactly as
//! GEOM posts one: the table reports it and the owner queues it.
//!
//! Devices are opened through private device nodes (see [`crate::discovery::uevents`]) so that the
//! host's own closes do not come back to it as "somebody closed this device after writing".

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use geom_multipath::{Errno, PathId, ProviderInfo};

use crate::path::device::{BlockDevice, Device, Source};

/// Who holds a provider open.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Consumer {
    /// A path of a multipath geom.
    Path(PathId),
    /// A NOP provider stacked on this one (by the NOP's name).
    Nop(String),
    /// A control-socket request, for its duration.
    Control,
    /// Taste's private read.
    Taste,
}

/// Access counts (r, w, e).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Readers.
    pub r: i32,
    /// Writers.
    pub w: i32,
    /// Exclusive holders.
    pub e: i32,
}

impl Counts {
    fn is_zero(self) -> bool {
        self.r == 0 && self.w == 0 && self.e == 0
    }
    fn plus(self, dr: i32, dw: i32, de: i32) -> Counts {
        Counts {
            r: self.r + dr,
            w: self.w + dw,
            e: self.e + de,
        }
    }
}

/// Where a provider's open device is published for [`Forward`] handles.
type Slot = Arc<RwLock<Option<Arc<dyn Device>>>>;

/// A device that forwards to whatever device its provider has open right now (ENXIO while
/// none is): what a provider stacked on another one holds, the way a GEOM consumer holds a
/// provider rather than a descriptor.
pub struct Forward {
    slot: Slot,
}

impl Forward {
    fn current(&self) -> Result<Arc<dyn Device>, Errno> {
        self.slot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Errno::ENXIO)
    }
}

impl Device for Forward {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        self.current()?.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), Errno> {
        self.current()?.write_at(buf, offset)
    }
    fn flush(&self) -> Result<(), Errno> {
        self.current()?.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> Result<(), Errno> {
        self.current()?.discard(offset, len)
    }
    fn physpath(&self) -> Result<String, Errno> {
        self.current()?.physpath()
    }
    fn direct_file(&self) -> Option<Arc<std::fs::File>> {
        self.current().ok()?.direct_file()
    }
}

/// One provider.
pub struct Provider {
    /// Name, size, sector size, stripe, rank.
    pub info: ProviderInfo,
    /// Where its device comes from.
    pub source: Source,
    /// Its provider went away; it is kept only until its holders let go.
    pub gone: bool,
    /// No request may go through it (a timed-out request is still out there).
    fenced: bool,
    consumers: BTreeMap<Consumer, Counts>,
    device: Option<Arc<dyn Device>>,
    slot: Slot,
    /// How the device is open: (for writing, exclusively).
    mode: (bool, bool),
}

/// What an access change means for the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessOutcome {
    /// Providers whose last writer let go, bottom first: re-taste them in this order.
    pub retaste: Vec<String>,
}

/// Every provider the host knows.
#[derive(Default)]
pub struct ProviderTable {
    providers: BTreeMap<String, Provider>,
}

impl ProviderTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces the description of) a provider. A provider that is still held
    /// keeps its holders and open device.
    pub fn insert(&mut self, info: ProviderInfo, source: Source) {
        match self.providers.get_mut(&info.name) {
            Some(p) => {
                p.info = info;
                p.source = source;
                p.gone = false;
            }
            None => {
                self.providers.insert(
                    info.name.clone(),
                    Provider {
                        info,
                        source,
                        gone: false,
                        fenced: false,
                        consumers: BTreeMap::new(),
                        device: None,
                        slot: Arc::default(),
                        mode: (false, false),
                    },
                );
            }
        }
    }

    /// Marks a provider gone: it accepts no new holders and disappears once the last one
    /// lets go. Returns the consumers that must be orphaned.
    pub fn remove(&mut self, name: &str) -> Vec<Consumer> {
        let Some(p) = self.providers.get_mut(name) else {
            return Vec::new();
        };
        p.gone = true;
        let holders: Vec<Consumer> = p.consumers.keys().cloned().collect();
        if holders.is_empty() {
            self.providers.remove(name);
        }
        holders
    }

    /// `true` if `name` went away but is still held: its holders have not let go yet.
    pub fn lingers(&self, name: &str) -> bool {
        self.providers.get(name).is_some_and(|p| p.gone)
    }

    /// Updates a provider's size (resize).
    pub fn set_size(&mut self, name: &str, mediasize: u64) {
        if let Some(p) = self.providers.get_mut(name) {
            p.info.mediasize = mediasize;
        }
    }

    /// GEOM::ident of provider `name`: its block device's, a stacked provider's lower
    /// one's (gnop passes the attribute down, as on FreeBSD); `None` if it cannot say.
    pub fn ident(&self, name: &str) -> Option<String> {
        let p = self.providers.get(name).filter(|p| !p.gone)?;
        match &p.source {
            Source::Block { ident, .. } => ident.clone(),
            Source::Stacked { lower, .. } if lower != name => self.ident(lower),
            _ => None,
        }
    }

    /// The provider called `name`, if it is there and not gone.
    pub fn info(&self, name: &str) -> Option<&ProviderInfo> {
        self.providers
            .get(name)
            .filter(|p| !p.gone)
            .map(|p| &p.info)
    }

    /// Every live provider.
    pub fn iter(&self) -> impl Iterator<Item = (&ProviderInfo, Counts)> {
        self.providers
            .values()
            .filter(|p| !p.gone)
            .map(|p| (&p.info, p.totals()))
    }

    /// Names of providers held open by someone.
    pub fn held(&self) -> impl Iterator<Item = &str> {
        self.providers
            .values()
            .filter(|p| p.device.is_some())
            .map(|p| p.info.name.as_str())
    }

    /// The open device of `name`, if someone holds it.
    pub fn device(&self, name: &str) -> Option<Arc<dyn Device>> {
        self.providers.get(name)?.device.clone()
    }

    /// A device forwarding to `name`'s open device, whatever it is at the time of each
    /// request (for a provider stacked on `name`).
    pub fn handle(&self, name: &str) -> Option<Arc<dyn Device>> {
        let slot = self.providers.get(name)?.slot.clone();
        Some(Arc::new(Forward { slot }))
    }

    /// Fences `name`: no request may go through it until [`unfence`](Self::unfence), and
    /// its device is told to stop (an NBD connection is cut). Returns `false` if there is
    /// no such provider.
    pub fn fence(&mut self, name: &str) -> bool {
        let Some(p) = self.providers.get_mut(name) else {
            return false;
        };
        p.fenced = true;
        if let Some(d) = &p.device {
            d.fence();
        }
        true
    }

    /// Lifts the fence on `name`.
    pub fn unfence(&mut self, name: &str) {
        if let Some(p) = self.providers.get_mut(name) {
            p.fenced = false;
        }
    }

    /// `true` while `name` is fenced.
    pub fn is_fenced(&self, name: &str) -> bool {
        self.providers.get(name).is_some_and(|p| p.fenced)
    }

    /// `true` if `name` is stacked on another provider (a NOP).
    pub fn is_stacked(&self, name: &str) -> bool {
        self.providers
            .get(name)
            .is_some_and(|p| matches!(p.source, Source::Stacked { .. }))
    }

    /// The counts `consumer` holds on `name`.
    pub fn counts(&self, name: &str, consumer: &Consumer) -> Counts {
        self.providers
            .get(name)
            .and_then(|p| p.consumers.get(consumer).copied())
            .unwrap_or_default()
    }

    /// The provider's total access counts.
    pub fn totals(&self, name: &str) -> Counts {
        self.providers
            .get(name)
            .map(Provider::totals)
            .unwrap_or_default()
    }

    /// `g_access(consumer, dr, dw, de)` on provider `name`; a stacked provider passes the
    /// change down to the one below first.
    pub fn access(
        &mut self,
        name: &str,
        consumer: Consumer,
        dr: i32,
        dw: i32,
        de: i32,
    ) -> Result<AccessOutcome, Errno> {
        let p = self.providers.get(name).ok_or(Errno::ENXIO)?;
        let mine = p.consumers.get(&consumer).copied().unwrap_or_default();
        let total = p.totals();
        let (others_w, others_e) = (total.w - mine.w, total.e - mine.e);
        if de > 0 && others_w > 0 {
            return Err(Errno::EPERM);
        }
        if dw > 0 && others_e > 0 {
            return Err(Errno::EPERM);
        }
        if (dr > 0 || dw > 0 || de > 0) && p.gone {
            return Err(Errno::ENXIO);
        }
        let new_mine = mine.plus(dr, dw, de);
        if new_mine.r < 0 || new_mine.w < 0 || new_mine.e < 0 {
            return Err(Errno::EINVAL);
        }
        let lower = match &p.source {
            Source::Stacked { lower, .. } => Some(lower.clone()),
            _ => None,
        };
        let mut outcome = AccessOutcome::default();
        if let Some(lower) = &lower {
            let releasing = dr <= 0 && dw <= 0 && de <= 0;
            match self.access(lower, Consumer::Nop(name.to_string()), dr, dw, de) {
                Ok(below) => outcome.retaste.extend(below.retaste),
                // The provider below is gone already: there is nothing to give back.
                Err(_) if releasing => {}
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = self.apply(name, consumer, total, new_mine, lower.as_deref()) {
            if let Some(lower) = &lower {
                // Undo what was just taken below; giving access back cannot fail.
                let _ = self.access(lower, Consumer::Nop(name.to_string()), -dr, -dw, -de);
            }
            return Err(e);
        }
        let new_total = total.plus(dr, dw, de);
        let gone = self.providers.get(name).is_none_or(|p| p.gone);
        if total.w > 0 && new_total.w == 0 && !gone {
            outcome.retaste.push(name.to_string());
        }
        if self
            .providers
            .get(name)
            .is_some_and(|p| p.gone && p.consumers.is_empty())
        {
            self.providers.remove(name);
        }
        Ok(outcome)
    }

    /// Records `consumer`'s new counts on `name` and opens, reopens or closes its device.
    fn apply(
        &mut self,
        name: &str,
        consumer: Consumer,
        total: Counts,
        new_mine: Counts,
        lower: Option<&str>,
    ) -> Result<(), Errno> {
        let _ = lower;
        let p = self.providers.get_mut(name).ok_or(Errno::ENXIO)?;
        let old_mine = p.consumers.get(&consumer).copied().unwrap_or_default();
        let new_total = Counts {
            r: total.r - old_mine.r + new_mine.r,
            w: total.w - old_mine.w + new_mine.w,
            e: total.e - old_mine.e + new_mine.e,
        };
        let wanted = (new_total.w > 0, new_total.e > 0);
        if new_total.is_zero() {
            p.device = None;
            p.mode = (false, false);
        } else if p.device.is_none() || (wanted.0 && !p.mode.0) || (wanted.1 && !p.mode.1) {
            // Open, or reopen with more rights; the old descriptor closes when the last
            // worker holding it is done.
            let mode = (wanted.0 || p.mode.0, wanted.1 || p.mode.1);
            p.device = Some(p.open(mode)?);
            p.mode = mode;
        }
        *p.slot.write().unwrap_or_else(|e| e.into_inner()) = p.device.clone();
        if new_mine.is_zero() {
            p.consumers.remove(&consumer);
        } else {
            p.consumers.insert(consumer, new_mine);
        }
        Ok(())
    }
}

impl Provider {
    fn totals(&self) -> Counts {
        self.consumers
            .values()
            .fold(Counts::default(), |a, c| a.plus(c.r, c.w, c.e))
    }

    fn open(&self, (write, exclusive): (bool, bool)) -> Result<Arc<dyn Device>, Errno> {
        match &self.source {
            Source::Block { node, physpath, .. } => {
                let dev = BlockDevice::open(node, write, exclusive, physpath.clone())
                    .map_err(|e| crate::path::device::errno_of(&e))?;
                Ok(Arc::new(dev))
            }
            Source::Stacked { device, .. } => Ok(device.clone()),
            Source::Fixed(dev) => Ok(dev.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::MemDevice;

    fn info(name: &str) -> ProviderInfo {
        ProviderInfo {
            name: name.into(),
            mediasize: 1 << 20,
            sectorsize: 512,
            stripesize: 0,
            stripeoffset: 0,
            rank: 1,
        }
    }

    fn table() -> ProviderTable {
        let dev: Arc<dyn Device> = Arc::new(MemDevice::new(1 << 20));
        let mut t = ProviderTable::new();
        t.insert(info("md0"), Source::Fixed(dev));
        t
    }

    #[test]
    fn device_opens_with_the_first_count_and_closes_with_the_last() {
        let mut t = table();
        assert!(t.device("md0").is_none());
        t.access("md0", Consumer::Control, 1, 0, 0).unwrap();
        let first = t.device("md0").unwrap();
        t.access("md0", Consumer::Taste, 1, 0, 0).unwrap();
        assert!(
            Arc::ptr_eq(&first, &t.device("md0").unwrap()),
            "opened once"
        );
        t.access("md0", Consumer::Control, -1, 0, 0).unwrap();
        assert!(t.device("md0").is_some());
        t.access("md0", Consumer::Taste, -1, 0, 0).unwrap();
        assert!(t.device("md0").is_none());
        assert_eq!(t.totals("md0"), Counts::default());
    }

    #[test]
    fn exclusivity_follows_g_access() {
        let mut t = table();
        let p = Consumer::Path(dummy_path());
        t.access("md0", p.clone(), 1, 1, 1).unwrap();
        assert_eq!(
            t.access("md0", Consumer::Control, 0, 1, 0),
            Err(Errno::EPERM)
        );
        assert_eq!(
            t.access("md0", Consumer::Control, 1, 0, 1),
            Err(Errno::EPERM)
        );
        assert!(
            t.access("md0", Consumer::Control, 1, 0, 0).is_ok(),
            "reading is allowed"
        );
        t.access("md0", Consumer::Control, -1, 0, 0).unwrap();
        assert_eq!(
            t.access("md0", p.clone(), -1, -1, -1).unwrap().retaste,
            ["md0"]
        );
        t.access("md0", Consumer::Control, 0, 1, 0).unwrap();
        assert_eq!(
            t.access("md0", p, 1, 1, 1),
            Err(Errno::EPERM),
            "someone writes"
        );
    }

    #[test]
    fn the_last_writer_letting_go_asks_for_a_retaste() {
        let mut t = table();
        t.access("md0", Consumer::Control, 1, 1, 0).unwrap();
        t.access("md0", Consumer::Taste, 1, 0, 0).unwrap();
        let out = t.access("md0", Consumer::Control, -1, -1, 0).unwrap();
        assert_eq!(out.retaste, ["md0"]);
        let out = t.access("md0", Consumer::Taste, -1, 0, 0).unwrap();
        assert!(
            out.retaste.is_empty(),
            "a reader closing is not a write-close"
        );
    }

    #[test]
    fn a_gone_provider_refuses_new_holders_and_goes_when_released() {
        let mut t = table();
        t.access("md0", Consumer::Control, 1, 0, 0).unwrap();
        assert_eq!(t.remove("md0"), [Consumer::Control]);
        assert!(t.info("md0").is_none());
        assert_eq!(t.access("md0", Consumer::Taste, 1, 0, 0), Err(Errno::ENXIO));
        t.access("md0", Consumer::Control, -1, 0, 0).unwrap();
        assert_eq!(
            t.access("md0", Consumer::Control, 0, 0, 0),
            Err(Errno::ENXIO)
        );
    }

    #[test]
    fn stacked_providers_pass_access_down_and_forward_to_the_device_below() {
        let mut t = table();
        let mut nop = info("md0.nop");
        nop.rank = 2;
        let forward = t.handle("md0").unwrap();
        t.insert(
            nop,
            Source::Stacked {
                lower: "md0".into(),
                device: forward,
            },
        );
        let mut buf = [0u8; 512];
        assert_eq!(
            t.handle("md0").unwrap().read_at(&mut buf, 0),
            Err(Errno::ENXIO),
            "nothing open below yet"
        );
        t.access("md0.nop", Consumer::Control, 1, 1, 1).unwrap();
        assert_eq!(
            t.counts("md0", &Consumer::Nop("md0.nop".into())),
            Counts { r: 1, w: 1, e: 1 }
        );
        t.device("md0").unwrap().write_at(&[3; 512], 0).unwrap();
        t.device("md0.nop").unwrap().read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [3; 512], "the NOP forwards to md0's open device");
        assert_eq!(
            t.access("md0", Consumer::Control, 0, 1, 0),
            Err(Errno::EPERM),
            "the NOP holds md0 exclusively"
        );
        let out = t.access("md0.nop", Consumer::Control, -1, -1, -1).unwrap();
        assert_eq!(out.retaste, ["md0", "md0.nop"], "bottom first");
        assert!(t.device("md0").is_none());
    }

    #[test]
    fn a_failed_open_above_gives_back_the_access_below() {
        let mut t = table();
        t.insert(
            info("orphan.nop"),
            Source::Stacked {
                lower: "missing".into(),
                device: Arc::new(MemDevice::new(512)),
            },
        );
        assert_eq!(
            t.access("orphan.nop", Consumer::Control, 1, 0, 0),
            Err(Errno::ENXIO)
        );
        assert_eq!(t.totals("orphan.nop"), Counts::default());
    }

    #[test]
    fn negative_counts_are_refused() {
        let mut t = table();
        assert_eq!(
            t.access("md0", Consumer::Control, -1, 0, 0),
            Err(Errno::EINVAL)
        );
    }

    fn dummy_path() -> PathId {
        use geom_multipath::testkit::MemTopology;
        let mut topo = MemTopology::new();
        topo.disk_with_paths("md", 1, 1 << 20, 512);
        let mut class = geom_multipath::Class::default();
        let r = topo.verb(
            &mut class,
            "create",
            &[("active_active", false), ("active_read", false)],
            &["FRED", "md0"],
        );
        assert_eq!(r.error, "");
        let g = class.find_geom("FRED").unwrap();
        let path = class.geom(g).unwrap().paths().next().unwrap();
        path
    }
}
