//! The direct route: what a driver may do with a request without asking the class, and the
//! epoch-stamped snapshot of it that the owner publishes.
//!
//! While nothing is wrong, routing in Active/Passive is a constant: every request goes to
//! the active path. A driver whose requests arrive on other threads than the class's owner
//! (the host's FUSE readers and NBD connections) may then send them to that path itself and
//! deliver their successes itself, sparing each request two hand-offs to the owner. The
//! class stays the only decider: [`Class::direct_path`] says when such a route exists, and
//! [`Routes`] (kept by the owner beside the class) turns that into a [`Route`] per geom with
//! an epoch that changes whenever the route does, for the driver to publish where its other
//! threads read it without a lock.
//!
//! The contract for a driver:
//! * after every input that is not a successful completion — an error, a timer, a verb, a
//!   taste, an orphan, an access change, deferred work — the owner calls
//!   [`Routes::refresh`] and publishes what changed **before it takes its next input**, so
//!   that no request is sent directly to a path after the owner has seen it fail;
//! * an attempt sent directly that fails (any error) goes to the owner, which hands it to
//!   [`Class::adopt`] and then [`Class::done`] like any other attempt (fail the path,
//!   reissue, deliver);
//! * requests sent directly are not counted in the class's in-flight counts until adopted:
//!   the driver keeps a path's device usable until its direct requests are back, even after
//!   the class detached the path;
//! * a success delivered directly is handed to [`Class::count_direct`] (the owner may batch
//!   them) so that the counters ([`crate::stats`]) still see every request once.
//!
//! Requests with deadlines (a path with an `io_timeout`), Active/Active and reads in
//! Active/Read (their path depends on every path's load), and anything on a withered or
//! stopping geom have no direct route: they go through the owner as before. The kernel
//! module does not use any of this (GEOM's own `g_down` is its direct route).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::class::Class;
use crate::io::Bio;
use crate::state::Mode;
use crate::topology::{GeomId, PathId};

/// A geom's direct route as published: where ordinary reads and writes may go without the
/// owner, and which version of that answer this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Different for every route [`Routes`] hands out (never reused, increasing).
    pub epoch: u64,
    /// The path ordinary reads and writes may be sent to directly; `None`: everything goes
    /// through the owner.
    pub path: Option<PathId>,
}

impl Class {
    /// The path every ordinary read and write of `geom` would be sent to by
    /// [`start`](Class::start) now, when a driver may send them there itself: the geom is
    /// Active/Passive, neither withered nor stopping, no request of it waits for a path
    /// (those go first, in order, through [`poll_dispatch`](Class::poll_dispatch)), and its
    /// active path is good and has no I/O deadline. `None` otherwise (the request goes
    /// through the owner).
    pub fn direct_path(&self, geom: GeomId) -> Option<PathId> {
        let g = self.geoms.get(geom.0)?;
        if g.mode != Mode::ActivePassive
            || g.stopping
            || g.provider.withered
            || !g.waiting.is_empty()
        {
            return None;
        }
        let active = g.active?;
        let path = self.paths.get(active.0)?;
        let good = path.geom == geom && g.members[path.index].is_good();
        (good && self.io_timeout(&path.name) == 0).then_some(active)
    }

    /// An attempt of `bio` that a driver already sent directly to `path` came back with an
    /// error: count it as started there, as [`start`](Class::start) would have, so that
    /// [`done`](Class::done) can judge it (fail the path, reissue, deliver). Returns `false`
    /// and leaves `bio` unstarted when `path` is no longer a path of the bio's geom (it was
    /// detached since); the driver then starts the request afresh.
    pub fn adopt(&mut self, bio: &mut Bio, path: PathId) -> bool {
        debug_assert!(bio.path().is_none(), "adopt of a request already in flight");
        let Some(p) = self.paths.get(path.0) else {
            return false;
        };
        if p.geom != bio.geom {
            return false;
        }
        let ndisks = self.live_geom(bio.geom).ndisks;
        bio.adopted(path, ndisks);
        let m = self.member_mut(path);
        m.inflight += 1;
        m.outstanding += bio.length;
        true
    }
}

/// The owner's book of published routes: the last [`Route`] of every geom.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    published: BTreeMap<GeomId, Route>,
    next_epoch: u64,
}

impl Routes {
    /// No routes published yet.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// The route last published for `geom`, if any.
    pub fn get(&self, geom: GeomId) -> Option<Route> {
        self.published.get(&geom).copied()
    }

    /// Compares every geom's [`Class::direct_path`] with what was published and appends to
    /// `changed` each geom whose route changed, with its new route (a new epoch); a geom
    /// that is gone gets a last route with no path and is forgotten. O(geoms).
    pub fn refresh(&mut self, class: &Class, changed: &mut Vec<(GeomId, Route)>) {
        let mut gone = Vec::new();
        for (&geom, route) in self.published.iter_mut() {
            if class.geom(geom).is_none() {
                gone.push(geom);
                if route.path.is_some() {
                    self.next_epoch += 1;
                    changed.push((
                        geom,
                        Route {
                            epoch: self.next_epoch,
                            path: None,
                        },
                    ));
                }
            }
        }
        for geom in gone {
            self.published.remove(&geom);
        }
        for geom in class.geoms() {
            let path = class.direct_path(geom);
            if self.published.get(&geom).is_some_and(|r| r.path == path) {
                continue;
            }
            self.next_epoch += 1;
            let route = Route {
                epoch: self.next_epoch,
                path,
            };
            self.published.insert(geom, route);
            changed.push((geom, route));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::MemTopology;
    use crate::{Errno, Op};
    use alloc::string::ToString;

    const AP: [(&str, bool); 2] = [("active_active", false), ("active_read", false)];
    const AA: [(&str, bool); 2] = [("active_active", true), ("active_read", false)];
    const AR: [(&str, bool); 2] = [("active_active", false), ("active_read", true)];

    fn geom(flags: &[(&str, bool)]) -> (Class, MemTopology, GeomId) {
        let mut topo = MemTopology::new();
        topo.disk_with_paths("md", 2, 1 << 20, 512);
        let mut class = Class::default();
        let reply = topo.verb(&mut class, "create", flags, &["FRED", "md0", "md1"]);
        assert_eq!(reply.error, "");
        let g = class.find_geom("FRED").unwrap();
        class.access(&mut topo, g, 1, 1, 0).unwrap();
        topo.drain(&mut class);
        (class, topo, g)
    }

    #[test]
    fn active_passive_routes_directly_to_the_active_path_until_it_fails() {
        let (mut class, mut topo, g) = geom(&AP);
        let active = class.geom(g).unwrap().active().unwrap();
        assert_eq!(class.direct_path(g), Some(active));
        let mut routes = Routes::new();
        let mut changed = Vec::new();
        routes.refresh(&class, &mut changed);
        assert_eq!(changed.len(), 1);
        let first = changed[0].1;
        assert_eq!(first.path, Some(active));
        changed.clear();
        routes.refresh(&class, &mut changed);
        assert!(changed.is_empty(), "nothing changed, nothing published");

        // A direct attempt fails with EIO: adopted, the path fails, the request moves on.
        let mut bio = Bio::new(1, g, Op::Read, 0, 512);
        assert!(class.adopt(&mut bio, active));
        let done = class.done(&mut bio, Err(Errno::EIO));
        let crate::Done::Reissue(next) = done else {
            panic!("expected a reissue, got {done:?}");
        };
        assert_ne!(next, active);
        topo.drain(&mut class);
        routes.refresh(&class, &mut changed);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].1.path, Some(next), "the new active path");
        assert!(changed[0].1.epoch > first.epoch);
        class.done(&mut bio, Ok(()));
        assert_eq!(class.path(next).unwrap().inflight(), 0);
    }

    #[test]
    fn no_direct_route_where_the_owner_must_decide() {
        let (class, _, g) = geom(&AA);
        assert_eq!(class.direct_path(g), None, "Active/Active balances load");
        let (class, _, g) = geom(&AR);
        assert_eq!(class.direct_path(g), None, "Active/Read spreads reads");
        let (mut class, _, g) = geom(&AP);
        let active = class.geom(g).unwrap().active().unwrap();
        let name = class.path(active).unwrap().name().to_string();
        class.set_io_timeout_override(&name, Some(5));
        assert_eq!(
            class.direct_path(g),
            None,
            "a deadline needs the owner's timers"
        );
    }

    #[test]
    fn a_detached_path_is_not_adopted() {
        let (mut class, mut topo, g) = geom(&AP);
        let active = class.geom(g).unwrap().active().unwrap();
        let name = class.path(active).unwrap().name().to_string();
        let reply = topo.verb(&mut class, "remove", &[], &["FRED", &name]);
        assert_eq!(reply.error, "");
        topo.drain(&mut class);
        assert!(
            class.path(active).is_none(),
            "an idle removed path is detached"
        );
        let mut bio = Bio::new(1, g, Op::Write, 0, 512);
        assert!(!class.adopt(&mut bio, active));
        assert_eq!(bio.path(), None);
        let mut routes = Routes::new();
        let mut changed = Vec::new();
        routes.refresh(&class, &mut changed);
        assert_eq!(changed.len(), 1);
        assert_ne!(changed[0].1.path, Some(active));
    }
}
