//! Bounded queueing when no path is usable (OpenVMS's `MVTIMEOUT`, dm's `no_path_retry`):
//! with `queue_timeout` set, a request that finds no usable path waits, in order, up to
//! that many seconds for one to return, instead of failing at once with ENXIO as FreeBSD's
//! does.
//!
//! The queue is per geom and bounded in requests and bytes; a full queue refuses the newest
//! request with ENXIO. Waiting requests come back to the driver as [`Dispatch`] effects from
//! [`Class::poll_dispatch`]: `Issue` once a path is usable (routed and counted in flight as
//! if `start` had just run), `Fail` with ENXIO when their time is up or when `destroy`,
//! `stop`, unload or `configure` to 0 ends queueing. Every waiting request is answered
//! exactly once. Only requests the driver started with [`Class::start_or_queue`] ever wait,
//! so a driver that does not carry queueing out keeps FreeBSD's behaviour whatever the
//! tunables say.

use alloc::collections::VecDeque;

use crate::class::Class;
use crate::errno::Errno;
use crate::event::Message;
use crate::io::Bio;
use crate::timer::{Stamp, SEC};
use crate::topology::{GeomId, PathId};

/// What to do with a request that was waiting for a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// Send it on `path` (already counted in flight there) and complete it with `done` as
    /// usual. The `bio` replaces the driver's copy.
    Issue {
        /// The request, routed.
        bio: Bio,
        /// Its path.
        path: PathId,
    },
    /// Answer it with `error`; it is finished.
    Fail {
        /// The request.
        bio: Bio,
        /// Its result (ENXIO, as FreeBSD's `out of providers`).
        error: Errno,
    },
}

/// One geom's waiting requests, oldest first, and the counts its console messages report.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    entries: VecDeque<(Bio, Stamp)>,
    bytes: u64,
    /// Queueing has started and not yet ended: (resumed, failed) so far.
    episode: Option<(u32, u32)>,
}

impl Waiting {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Requests waiting.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes waiting.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// When the oldest waiting request times out, once known.
    pub(crate) fn front_deadline(&self) -> Option<u64> {
        self.entries.front().and_then(|(_, s)| s.at())
    }

    /// When the newest waiting request times out, once known.
    pub(crate) fn back_deadline(&self) -> Option<u64> {
        self.entries.back().and_then(|(_, s)| s.at())
    }

    pub(crate) fn fix(&mut self, now: u64) {
        for (_, s) in &mut self.entries {
            s.fix(now);
        }
    }

    fn pop(&mut self) -> Option<Bio> {
        let (bio, _) = self.entries.pop_front()?;
        self.bytes -= bio.length;
        Some(bio)
    }
}

/// How a request the driver offered with `start_or_queue` was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    /// Send it on this path, as `start`'s `Ok`.
    Path(PathId),
    /// It waits for a path; it comes back through [`Class::poll_dispatch`].
    Queued,
    /// Answer it with this error now, as `start`'s `Err`.
    Refused(Errno),
}

impl Class {
    /// [`start`](Class::start), for a driver that carries queueing out: a request that finds
    /// no usable path (or finds others already waiting) waits when the geom queues, instead
    /// of being refused.
    pub fn start_or_queue(&mut self, bio: &mut Bio) -> Started {
        bio.queueable = true;
        match self.start(bio) {
            Ok(path) => Started::Path(path),
            Err(e) if self.wait_for_path(bio) => {
                let _ = e;
                Started::Queued
            }
            Err(e) => {
                self.count_answer(bio, Err(e));
                Started::Refused(e)
            }
        }
    }

    /// The next waiting request to issue or fail, oldest first. Drain it after every input
    /// and timeout, before `poll_event` (resuming ends a queueing episode with a message).
    pub fn poll_dispatch(&mut self) -> Option<Dispatch> {
        if self.dispatch.is_empty() && self.waiting_total > 0 {
            self.resume_waiting();
        }
        let next = self.dispatch.pop_front();
        if let Some(Dispatch::Fail { bio, error }) = &next {
            self.count_answer(bio, Err(*error));
        }
        next
    }

    /// Requests waiting for a path in `geom`.
    pub fn waiting(&self, geom: GeomId) -> (usize, u64) {
        self.geoms
            .get(geom.0)
            .map_or((0, 0), |g| (g.waiting.len(), g.waiting.bytes()))
    }

    /// Puts `bio` at the back of its geom's queue, if the geom queues and the queue has
    /// room; `false` means the caller answers it with ENXIO (and a full queue counts it as
    /// failed).
    pub(crate) fn wait_for_path(&mut self, bio: &mut Bio) -> bool {
        let t = self.tunables;
        let Some(g) = self.geoms.get_mut(bio.geom.0) else {
            return false;
        };
        let timeout = g.settings.queue_timeout(&t);
        if !bio.queueable || timeout == 0 || g.stopping || g.provider.withered {
            return false;
        }
        let full = g.waiting.len() >= t.queue_max_requests() as usize
            || g.waiting.bytes + bio.length > t.queue_max_bytes();
        if g.waiting.episode.is_none() {
            g.waiting.episode = Some((0, 0));
            g.stats.queue_episodes += 1;
            let geom = g.name.clone();
            self.log(Message::QueueingStarted { geom, timeout });
        }
        let g = self.live_geom_mut(bio.geom);
        if full {
            if let Some((_, failed)) = &mut g.waiting.episode {
                *failed += 1;
            }
            g.stats.queue_failed += 1;
            self.end_episode_if_idle(bio.geom);
            return false;
        }
        bio.reset_attempts();
        g.stats.queued += 1;
        g.waiting.bytes += bio.length;
        g.waiting
            .entries
            .push_back((bio.clone(), Stamp::After(u64::from(timeout) * SEC)));
        self.waiting_total += 1;
        self.want_clock();
        true
    }

    /// Routes every waiting request of every geom that has a usable path again.
    fn resume_waiting(&mut self) {
        for gid in self.geom_order.clone() {
            while !self.live_geom(gid).waiting.is_empty() && self.good(gid) > 0 {
                let g = self.live_geom_mut(gid);
                let mut bio = g.waiting.pop().expect("not empty");
                self.waiting_total -= 1;
                let g = self.live_geom_mut(gid);
                if let Some((resumed, _)) = &mut g.waiting.episode {
                    *resumed += 1;
                }
                match self.route(&mut bio, false) {
                    Ok(path) => self.dispatch.push_back(Dispatch::Issue { bio, path }),
                    Err(error) => {
                        self.live_geom_mut(gid).stats.queue_failed += 1;
                        self.dispatch.push_back(Dispatch::Fail { bio, error })
                    }
                }
            }
            self.end_episode_if_idle(gid);
        }
    }

    /// Fails the waiting requests of `geom` whose time is up (all of them when its
    /// queueing was turned off).
    pub(crate) fn expire_waiting(&mut self, geom: GeomId, now: u64) {
        let off = self.live_geom(geom).settings.queue_timeout(&self.tunables) == 0;
        loop {
            let g = self.live_geom_mut(geom);
            match g.waiting.entries.front() {
                Some((_, s)) if off || s.due(now) => {}
                _ => break,
            }
            self.fail_one_waiting(geom);
        }
        self.end_episode_if_idle(geom);
    }

    /// Ends queueing in `geom` at once: every waiting request fails with ENXIO (destroy,
    /// stop, unload, `configure` to 0).
    pub(crate) fn fail_waiting(&mut self, geom: GeomId) {
        while !self.live_geom(geom).waiting.is_empty() {
            self.fail_one_waiting(geom);
        }
        self.end_episode_if_idle(geom);
    }

    fn fail_one_waiting(&mut self, geom: GeomId) {
        let g = self.live_geom_mut(geom);
        let Some(bio) = g.waiting.pop() else {
            return;
        };
        if let Some((_, failed)) = &mut g.waiting.episode {
            *failed += 1;
        }
        g.stats.queue_failed += 1;
        self.waiting_total -= 1;
        self.dispatch.push_back(Dispatch::Fail {
            bio,
            error: Errno::ENXIO,
        });
    }

    /// The queue of `geom` emptied: `<geom> stopped queueing: …` with the counts.
    fn end_episode_if_idle(&mut self, geom: GeomId) {
        let g = self.live_geom_mut(geom);
        if !g.waiting.is_empty() {
            return;
        }
        if let Some((resumed, failed)) = g.waiting.episode.take() {
            let geom = g.name.clone();
            self.log(Message::QueueingEnded {
                geom,
                resumed,
                failed,
            });
        }
    }
}
