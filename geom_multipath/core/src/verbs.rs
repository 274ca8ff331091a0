//! The kernel half of every verb (`g_multipath_config` and the `g_multipath_ctl_*`
//! functions): one function per verb, named like the verb, behind one flat dispatcher that
//! checks the request version first and ends in `Unknown verb …`.
//!
//! Verbs report errors by recording them on the [`Request`] (only the first one counts), as
//! FreeBSD's do, and carry on exactly where FreeBSD's carry on: `create` keeps adding the
//! remaining providers after a failure and then undoes the geom; `destroy` still destroys
//! after failing to erase the label.

use alloc::format;
use alloc::string::String;

use crate::class::{Class, FAIL, LOST};
use crate::ctl::{CtlError, Request};
use crate::event::{Message, Probe};
use crate::lifecycle::{Destroyed, NewGeom};
use crate::metadata::{self, Metadata, VERSION};
use crate::settings::{BadValue, Setting, Settings};
use crate::state::Mode;
use crate::stats::FailCause;
use crate::topology::{GeomId, Topology};

/// The verbs the class implements, in FreeBSD's dispatch order.
pub const VERBS: [&str; 11] = [
    "add",
    "prefer",
    "create",
    "configure",
    "stop",
    "destroy",
    "fail",
    "restore",
    "remove",
    "rotate",
    "getactive",
];

/// Strips one leading `/dev/` (what `add`, `create` and `prefer` do with provider names).
pub fn strip_dev(name: &str) -> &str {
    name.strip_prefix("/dev/").unwrap_or(name)
}

impl Class {
    /// `g_multipath_config`: runs the verb named by the request's `verb` parameter. The
    /// outcome is on the request: its first error, and for `getactive` its `output`.
    pub fn ctl(&mut self, topo: &mut dyn Topology, req: &mut Request) {
        let verb = req.ascii("verb").unwrap_or_default();
        match req.u32("version") {
            None => req.error(CtlError::NoArg(String::from("version"))),
            Some(v) if v != VERSION => req.error(CtlError::OutOfSync),
            Some(_) => match verb.as_str() {
                "add" => self.add(topo, req),
                "prefer" => self.prefer(req),
                "create" => self.create(topo, req),
                "configure" => self.configure(topo, req),
                "stop" => self.stop(topo, req),
                "destroy" => self.destroy_verb(topo, req),
                "fail" => self.fail_or_restore(req, true),
                "restore" => self.fail_or_restore(req, false),
                "remove" => self.remove(topo, req),
                "rotate" => self.rotate_verb(req),
                "getactive" => self.getactive(req),
                _ => req.error(CtlError::UnknownVerb(verb)),
            },
        }
    }

    /// `arg0`, or `No 'arg0' argument`.
    fn arg(req: &mut Request, n: usize) -> Option<String> {
        let name = format!("arg{n}");
        let value = req.ascii(&name);
        if value.is_none() {
            req.error(CtlError::NoArg(name));
        }
        value
    }

    /// The geom named by `arg0`; `missing` makes the verb's own not-found error.
    fn geom_arg(
        &self,
        req: &mut Request,
        missing: fn(String) -> CtlError,
    ) -> Option<(GeomId, String)> {
        let name = Self::arg(req, 0)?;
        match self.find_geom(&name) {
            Some(id) => Some((id, name)),
            None => {
                req.error(missing(name));
                None
            }
        }
    }

    /// `create [-AR] name prov ...`: a MANUAL geom with the given paths, all or nothing.
    fn create(&mut self, topo: &mut dyn Topology, req: &mut Request) {
        let Some(nargs) = req.int("nargs") else {
            req.error(CtlError::NoArg(String::from("nargs")));
            return;
        };
        if nargs < 2 {
            req.error(CtlError::WrongNumberOfArguments);
            return;
        }
        let Some(name) = Self::arg(req, 0) else {
            return;
        };
        if self.find_geom(&name).is_some() {
            req.error(CtlError::AlreadyExist(name));
            return;
        }
        if let Err(why) = metadata::check_name(&name) {
            req.error(CtlError::BadName(name, why));
            return;
        }
        let active_active = req.flag("active_active");
        let active_read = req.flag("active_read");
        let new = NewGeom {
            name: &name,
            uuid: "",
            mode: Mode::from_flags(active_active, active_read),
            size: 0,
            sectorsize: 0,
        };
        let Some(geom) = self.create_geom(topo, new) else {
            req.error(CtlError::CannotCreate(name, String::new()));
            return;
        };
        for i in 1..nargs as usize {
            // FreeBSD passes a missing argument on as NULL; stop at the first one instead
            // (its error is the one reported, and nargs cannot make the loop run long).
            let Some(prov) = Self::arg(req, i) else {
                break;
            };
            self.add_name(topo, req, &prov);
        }
        let attached = self.geoms.get(geom.0).map_or(0, |g| g.ndisks);
        if attached != (nargs - 1) as u32 {
            self.destroy(topo, geom);
        }
    }

    /// `g_multipath_ctl_add_name`: the checks before attaching `prov` to the geom named by
    /// `arg0`, then the attach.
    fn add_name(&mut self, topo: &mut dyn Topology, req: &mut Request, prov: &str) {
        let Some((geom, _)) = self.geom_arg(req, CtlError::DeviceInvalid) else {
            return;
        };
        let prov = strip_dev(prov);
        let Some(pp) = topo.provider(prov) else {
            req.error(CtlError::ProviderInvalid(String::from(prov)));
            return;
        };
        if self.attached_to(geom, &pp.name).is_some() {
            req.error(CtlError::AlreadyThere(pp.name));
            return;
        }
        let g = self.live_geom(geom);
        let label = if g.uuid.is_empty() {
            0
        } else {
            u64::from(pp.sectorsize)
        };
        if g.provider.mediasize != 0 && g.provider.mediasize + label != pp.mediasize {
            req.error(CtlError::SizeMismatch(
                g.provider.mediasize + label,
                pp.mediasize,
            ));
            return;
        }
        if g.provider.sectorsize != 0 && g.provider.sectorsize != pp.sectorsize {
            req.error(CtlError::SectorsizeMismatch(
                g.provider.sectorsize,
                pp.sectorsize,
            ));
            return;
        }
        if let Err(e) = self.add_disk(topo, geom, &pp) {
            req.error(CtlError::AdditionError(e));
        }
    }

    /// `add name prov`: one more path, with no metadata written to it.
    fn add(&mut self, topo: &mut dyn Topology, req: &mut Request) {
        if self.geom_arg(req, CtlError::DeviceNotFound).is_none() {
            return;
        }
        if let Some(prov) = Self::arg(req, 1) {
            self.add_name(topo, req, &prov);
        }
    }

    /// `prefer name prov`: make a good path the active one.
    fn prefer(&mut self, req: &mut Request) {
        let Some((geom, gname)) = self.geom_arg(req, CtlError::DeviceInvalid) else {
            return;
        };
        let Some(nargs) = req.int("nargs") else {
            req.error(CtlError::NoArg(String::from("nargs")));
            return;
        };
        if nargs != 2 {
            req.error(CtlError::MissingDevice);
            return;
        }
        let Some(prov) = Self::arg(req, 1) else {
            return;
        };
        let prov = strip_dev(&prov);
        let found = self
            .order(geom)
            .find(|&pid| self.live_path(pid).name == prov);
        let Some(path) = found else {
            req.error(CtlError::ProviderNotFound(String::from(prov)));
            return;
        };
        if self.is_bad(path) {
            req.error(CtlError::ConsumerInvalid(String::from(prov)));
            return;
        }
        let g = self.live_geom_mut(geom);
        g.active = Some(path);
        g.preferred = Some(path);
        if self.live_geom(geom).mode == Mode::ActivePassive {
            self.log(Message::Preferred {
                path: String::from(prov),
                geom: gname,
            });
        }
    }

    /// `configure [-APR] name`: change the mode; P wins over R, which wins over A. An
    /// AUTOMATIC geom's label is rewritten on the active path. The extensions (check
    /// interval, reinstate, failback, queue timeout, selector) are checked first, all or
    /// nothing, so a bad value changes nothing.
    fn configure(&mut self, topo: &mut dyn Topology, req: &mut Request) {
        let Some((geom, name)) = self.geom_arg(req, CtlError::DeviceInvalid) else {
            return;
        };
        let Some(settings) = self.configured_settings(geom, req) else {
            return;
        };
        let g = self.live_geom_mut(geom);
        if g.settings.selector != settings.selector {
            (g.rr_cursor, g.rr_left) = (0, 0);
        }
        g.settings = settings;
        if settings.queue_timeout(&self.tunables) == 0 {
            self.fail_waiting(geom);
        }
        if req.flag("active_active") {
            self.live_geom_mut(geom).mode = Mode::ActiveActive;
        }
        if req.flag("active_read") {
            self.live_geom_mut(geom).mode = Mode::ActiveRead;
        }
        if req.flag("active_passive") {
            self.live_geom_mut(geom).mode = Mode::ActivePassive;
        }
        let g = self.live_geom(geom);
        let (Some(active), false) = (g.active, g.uuid.is_empty()) else {
            return;
        };
        let p = self.live_path(active);
        let md = Metadata {
            uuid: g.uuid.clone(),
            name: name.clone(),
            sectorsize: p.sectorsize,
            size: p.mediasize,
            mode: g.mode,
        };
        if let Err(e) = self.write_metadata(topo, active, &md) {
            let path = self.live_path(active).name.clone();
            req.error(CtlError::CantUpdateMetadata(path, e));
        }
    }

    /// Sets one `configure` extension of the geom called `name` from the driver's saved
    /// configuration (the host's tunables file): a geom of that name, now or later (create,
    /// taste), has it, as if `configure` had set it. A bad value changes nothing.
    pub fn preset(&mut self, name: &str, setting: Setting, value: &str) -> Result<(), BadValue> {
        let mut preset = self.presets.get(name).copied().unwrap_or_default();
        preset.apply(setting, value)?;
        self.presets.insert(String::from(name), preset);
        if let Some(geom) = self.find_geom(name) {
            let mut now = self.live_geom(geom).settings;
            now.apply(setting, value)?;
            self.live_geom_mut(geom).settings = now;
            if now.queue_timeout(&self.tunables) == 0 {
                self.fail_waiting(geom);
            }
        }
        Ok(())
    }

    /// The geom's settings with the `configure` extensions of `req` applied; `None` (and
    /// the error recorded) if one is invalid. An option FreeBSD's tool does not send, or
    /// sends empty, leaves its setting alone.
    fn configured_settings(&self, geom: GeomId, req: &mut Request) -> Option<Settings> {
        let mut settings = self.live_geom(geom).settings;
        for setting in Setting::ALL {
            let name = setting.param();
            if req.param(name).is_none() {
                continue;
            }
            let value = req.ascii(name)?;
            if value.is_empty() {
                continue;
            }
            if settings.apply(setting, &value).is_err() {
                req.error(CtlError::InvalidSetting(String::from(name), value));
                return None;
            }
            if !self.timed && settings.needs_timers(setting) {
                req.error(CtlError::NotCarriedOut(String::from(name)));
                return None;
            }
        }
        Some(settings)
    }

    /// `stop name`: destroy the geom, leaving the labels alone.
    fn stop(&mut self, topo: &mut dyn Topology, req: &mut Request) {
        let Some((geom, _)) = self.geom_arg(req, CtlError::DeviceInvalid) else {
            return;
        };
        match self.destroy(topo, geom) {
            Destroyed::Now | Destroyed::InProgress => {}
        }
    }

    /// `destroy name`: erase the label on the active path of an AUTOMATIC geom, then
    /// destroy the geom.
    fn destroy_verb(&mut self, topo: &mut dyn Topology, req: &mut Request) {
        let Some((geom, _)) = self.geom_arg(req, CtlError::DeviceInvalid) else {
            return;
        };
        let g = self.live_geom(geom);
        if let (Some(active), false) = (g.active, g.uuid.is_empty()) {
            let (pname, sectorsize) = {
                let p = self.live_path(active);
                (p.name.clone(), p.sectorsize as usize)
            };
            let zeros = alloc::vec![0u8; sectorsize];
            match topo.access(active, 1, 1, 1) {
                Err(e) => req.error(CtlError::CantOpen(pname, e)),
                Ok(()) => {
                    let offset = {
                        let p = self.live_path(active);
                        p.mediasize.saturating_sub(u64::from(p.sectorsize))
                    };
                    let written = topo.write(active, offset, &zeros);
                    let _ = topo.access(active, -1, -1, -1);
                    if let Err(e) = written {
                        req.error(CtlError::CantErase(pname, e));
                    }
                }
            }
        }
        self.destroy(topo, geom);
    }

    /// `fail name prov` / `restore name prov`: set or clear FAIL on the (non-LOST) paths
    /// called `prov`; a path already in that state is skipped. `restore` never makes a path
    /// active.
    fn fail_or_restore(&mut self, req: &mut Request, fail: bool) {
        let Some((geom, gname)) = self.geom_arg(req, CtlError::DeviceNotFound) else {
            return;
        };
        let Some(prov) = Self::arg(req, 1) else {
            return;
        };
        let mut found = false;
        for path in self.order_vec(geom) {
            let flags = self.member(path).flags;
            if self.live_path(path).name != prov || flags & LOST != 0 {
                continue;
            }
            found = true;
            if fail == (flags & FAIL != 0) {
                continue;
            }
            let (path_name, geom_name) = (prov.clone(), gname.clone());
            if fail {
                self.log(Message::MarkedFail {
                    path: path_name.clone(),
                    geom: geom_name.clone(),
                });
                self.note_failed(path, FailCause::Admin);
                self.fault(path, FAIL);
                self.live_path_mut(path).health.admin_failed = true;
                self.probe(Probe::Fail {
                    geom: geom_name,
                    path: path_name,
                    error: 0,
                });
            } else {
                self.restore_path(path);
            }
        }
        if !found {
            req.error(CtlError::ProviderNotFound(prov));
        }
    }

    /// `remove name prov`: the path becomes LOST and is detached once idle; the metadata
    /// stays. Removing the last path destroys the geom.
    fn remove(&mut self, topo: &mut dyn Topology, req: &mut Request) {
        let Some((geom, gname)) = self.geom_arg(req, CtlError::DeviceNotFound) else {
            return;
        };
        let Some(prov) = Self::arg(req, 1) else {
            return;
        };
        let mut found = false;
        for path in self.order_vec(geom) {
            let Some(p) = self.paths.get(path.0) else {
                continue;
            };
            if p.name != prov || self.member(path).flags & LOST != 0 {
                continue;
            }
            found = true;
            self.log(Message::Removing {
                path: prov.clone(),
                geom: gname.clone(),
            });
            self.probe(Probe::Remove {
                geom: gname.clone(),
                path: prov.clone(),
            });
            self.live_geom_mut(geom).ndisks -= 1;
            self.fault(path, LOST);
            self.detach_if_idle(topo, path);
            if self.geoms.get(geom.0).is_none() {
                return; // the last path took the geom with it
            }
        }
        if !found {
            req.error(CtlError::ProviderNotFound(prov));
        }
    }

    /// `rotate name`: the next good path in kernel order becomes active.
    fn rotate_verb(&mut self, req: &mut Request) {
        if let Some((geom, _)) = self.geom_arg(req, CtlError::DeviceInvalid) {
            self.rotate(geom);
        }
    }

    /// `getactive name`: the active path (`none` if there is none), or in Active/Active
    /// every good path, newest first.
    fn getactive(&mut self, req: &mut Request) {
        let Some((geom, _)) = self.geom_arg(req, CtlError::DeviceInvalid) else {
            return;
        };
        let text = self.active_text(geom);
        req.set_output(&text);
    }

    /// The `getactive` answer for a geom, newline included.
    pub fn active_text(&self, geom: GeomId) -> String {
        let g = self.live_geom(geom);
        let mut text = String::new();
        if g.mode == Mode::ActiveActive {
            for m in g.members.iter().rev().filter(|m| m.is_good()) {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&self.live_path(m.id).name);
            }
        } else if let Some(active) = g.active {
            text.push_str(&self.live_path(active).name);
        }
        if text.is_empty() {
            text.push_str("none");
        }
        text.push('\n');
        text
    }
}
