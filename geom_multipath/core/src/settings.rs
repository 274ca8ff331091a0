//! A geom's own settings beyond FreeBSD's (the `gmultipath configure` extensions): its path
//! checker interval, automatic reinstatement, failback, queueing timeout and path selector.
//!
//! Each setting is either unset (the geom follows the `kern.geom.multipath.*` tunable, or
//! FreeBSD's behaviour where there is no tunable) or set by the admin. Only set ones are
//! shown (dumpconf, and so `gmultipath list`). This module owns the words: parsing what
//! the admin typed and printing it back the same way, so `configure -f deferred:30` lists as
//! `Failback: deferred:30`. It decides nothing about paths; the class reads the effective
//! values through [`Class::effective`](crate::Class).

use core::fmt;

use geom_multipath_sysctl::Values;

/// What happens in Active/Passive (and for writes in Active/Read) when a path returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Failback {
    /// FreeBSD: a returning path comes back PASSIVE.
    #[default]
    Manual,
    /// A returning path that ranks before the active one becomes active at once.
    Immediate,
    /// The same, once the returning path has stayed good for this many seconds.
    Deferred(u32),
}

/// How Active/Active (and reads in Active/Read) pick a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Selector {
    /// FreeBSD: fewest requests in flight, the longest idle on a tie.
    #[default]
    LeastBusy,
    /// This many requests to one path, then the next good path in kernel order.
    RoundRobin(u32),
    /// The path with the fewest bytes in flight relative to its measured throughput.
    ServiceTime,
}

/// The most seconds a duration setting accepts (one day, as the tunables).
pub const MAX_SECONDS: u32 = 86_400;
/// The largest round-robin batch.
pub const MAX_BATCH: u32 = 1 << 20;

/// Why a setting's value was refused (the text follows `Invalid <setting> value '<v>'`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadValue;

impl Failback {
    /// `manual`, `immediate` or `deferred:N` (N seconds, 1..=86400).
    pub fn parse(text: &str) -> Result<Failback, BadValue> {
        match text {
            "manual" => Ok(Failback::Manual),
            "immediate" => Ok(Failback::Immediate),
            _ => {
                let n = text.strip_prefix("deferred:").ok_or(BadValue)?;
                Ok(Failback::Deferred(seconds(n, 1)?))
            }
        }
    }
}

impl fmt::Display for Failback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failback::Manual => f.write_str("manual"),
            Failback::Immediate => f.write_str("immediate"),
            Failback::Deferred(n) => write!(f, "deferred:{n}"),
        }
    }
}

impl Selector {
    /// `least-busy`, `round-robin` (a batch of 1), `round-robin:N` or `service-time`.
    pub fn parse(text: &str) -> Result<Selector, BadValue> {
        match text {
            "least-busy" => Ok(Selector::LeastBusy),
            "round-robin" => Ok(Selector::RoundRobin(1)),
            "service-time" => Ok(Selector::ServiceTime),
            _ => {
                let n = text.strip_prefix("round-robin:").ok_or(BadValue)?;
                let n = number(n)?;
                if n == 0 || n > MAX_BATCH {
                    return Err(BadValue);
                }
                Ok(Selector::RoundRobin(n))
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::LeastBusy => f.write_str("least-busy"),
            Selector::RoundRobin(n) => write!(f, "round-robin:{n}"),
            Selector::ServiceTime => f.write_str("service-time"),
        }
    }
}

/// A plain decimal number (no sign, no blanks).
fn number(text: &str) -> Result<u32, BadValue> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadValue);
    }
    text.parse().map_err(|_| BadValue)
}

/// Seconds in `min..=MAX_SECONDS`.
fn seconds(text: &str, min: u32) -> Result<u32, BadValue> {
    let n = number(text)?;
    if n < min || n > MAX_SECONDS {
        return Err(BadValue);
    }
    Ok(n)
}

/// The per-geom overrides; `None` follows the tunable (or FreeBSD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Seconds between probes (`kern.geom.multipath.check_interval`).
    pub check_interval: Option<u32>,
    /// Reinstate on a good probe (`kern.geom.multipath.reinstate`).
    pub reinstate: Option<bool>,
    /// Seconds a request waits for a usable path (`kern.geom.multipath.queue_timeout`).
    pub queue_timeout: Option<u32>,
    /// Failback; unset is [`Failback::Manual`].
    pub failback: Option<Failback>,
    /// Selector; unset is [`Selector::LeastBusy`].
    pub selector: Option<Selector>,
}

/// One setting as `configure` names it: the gctl parameter, and the dumpconf element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `check_interval` / `<CheckInterval>`.
    CheckInterval,
    /// `reinstate` / `<Reinstate>`.
    Reinstate,
    /// `queue_timeout` / `<QueueTimeout>`.
    QueueTimeout,
    /// `failback` / `<Failback>`.
    Failback,
    /// `selector` / `<Selector>`.
    Selector,
}

impl Setting {
    /// Every setting, in the order `configure` reads and dumpconf writes them.
    pub const ALL: [Setting; 5] = [
        Setting::CheckInterval,
        Setting::Reinstate,
        Setting::Failback,
        Setting::QueueTimeout,
        Setting::Selector,
    ];

    /// The gctl parameter `configure` reads it from.
    pub fn param(self) -> &'static str {
        match self {
            Setting::CheckInterval => "check_interval",
            Setting::Reinstate => "reinstate",
            Setting::QueueTimeout => "queue_timeout",
            Setting::Failback => "failback",
            Setting::Selector => "selector",
        }
    }

    /// The element dumpconf writes it as (and `gmultipath list` shows).
    pub fn element(self) -> &'static str {
        match self {
            Setting::CheckInterval => "CheckInterval",
            Setting::Reinstate => "Reinstate",
            Setting::QueueTimeout => "QueueTimeout",
            Setting::Failback => "Failback",
            Setting::Selector => "Selector",
        }
    }
}

impl Settings {
    /// Applies `value` (as the admin typed it; `default` unsets) to `setting`, leaving
    /// everything unchanged on a bad value.
    pub fn apply(&mut self, setting: Setting, value: &str) -> Result<(), BadValue> {
        /// `default` unsets; anything else is parsed.
        fn or_unset<T>(
            value: &str,
            parse: impl FnOnce(&str) -> Result<T, BadValue>,
        ) -> Result<Option<T>, BadValue> {
            if value == "default" {
                Ok(None)
            } else {
                parse(value).map(Some)
            }
        }
        match setting {
            Setting::CheckInterval => self.check_interval = or_unset(value, |v| seconds(v, 0))?,
            Setting::Reinstate => {
                self.reinstate = or_unset(value, |v| match v {
                    "0" | "off" => Ok(false),
                    "1" | "on" => Ok(true),
                    _ => Err(BadValue),
                })?
            }
            Setting::QueueTimeout => self.queue_timeout = or_unset(value, |v| seconds(v, 0))?,
            Setting::Failback => self.failback = or_unset(value, Failback::parse)?,
            Setting::Selector => self.selector = or_unset(value, Selector::parse)?,
        }
        Ok(())
    }

    /// Writes a set setting's value as `apply` reads it; `None` when it is unset.
    pub fn write(&self, setting: Setting, out: &mut dyn fmt::Write) -> Option<fmt::Result> {
        Some(match setting {
            Setting::CheckInterval => write!(out, "{}", self.check_interval?),
            Setting::Reinstate => write!(out, "{}", u8::from(self.reinstate?)),
            Setting::QueueTimeout => write!(out, "{}", self.queue_timeout?),
            Setting::Failback => write!(out, "{}", self.failback?),
            Setting::Selector => write!(out, "{}", self.selector?),
        })
    }

    /// `setting` is set to a value that only a driver running the timer table, probes and
    /// queueing carries out.
    pub fn needs_timers(&self, setting: Setting) -> bool {
        match setting {
            Setting::CheckInterval => self.check_interval.is_some_and(|s| s > 0),
            Setting::Reinstate => self.reinstate == Some(true),
            Setting::QueueTimeout => self.queue_timeout.is_some_and(|s| s > 0),
            Setting::Failback => matches!(self.failback, Some(Failback::Deferred(_))),
            // It measures throughput on a timer.
            Setting::Selector => self.selector == Some(Selector::ServiceTime),
        }
    }

    /// Seconds between probes, 0 for none.
    pub fn check_interval(&self, t: &Values) -> u32 {
        self.check_interval.unwrap_or_else(|| t.check_interval())
    }

    /// Whether a good probe restores a FAIL path.
    pub fn reinstate(&self, t: &Values) -> bool {
        self.reinstate.unwrap_or_else(|| t.reinstate())
    }

    /// Seconds a request may wait for a path, 0 for no queueing.
    pub fn queue_timeout(&self, t: &Values) -> u32 {
        self.queue_timeout.unwrap_or_else(|| t.queue_timeout())
    }

    /// The failback policy.
    pub fn failback(&self) -> Failback {
        self.failback.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn shown(s: &Settings, setting: Setting) -> Option<String> {
        let mut out = String::new();
        s.write(setting, &mut out)?.unwrap();
        Some(out)
    }

    #[test]
    fn words_round_trip() {
        for text in ["manual", "immediate", "deferred:1", "deferred:86400"] {
            let mut s = Settings::default();
            s.apply(Setting::Failback, text).unwrap();
            assert_eq!(shown(&s, Setting::Failback).as_deref(), Some(text));
        }
        for text in [
            "least-busy",
            "round-robin:1",
            "round-robin:16",
            "service-time",
        ] {
            let mut s = Settings::default();
            s.apply(Setting::Selector, text).unwrap();
            assert_eq!(shown(&s, Setting::Selector).as_deref(), Some(text));
        }
        assert_eq!(Selector::parse("round-robin"), Ok(Selector::RoundRobin(1)));
    }

    #[test]
    fn bad_values_change_nothing() {
        let mut s = Settings::default();
        s.apply(Setting::QueueTimeout, "10").unwrap();
        for (setting, bad) in [
            (Setting::QueueTimeout, "-1"),
            (Setting::QueueTimeout, "86401"),
            (Setting::QueueTimeout, " 5"),
            (Setting::CheckInterval, "x"),
            (Setting::Reinstate, "2"),
            (Setting::Failback, "deferred:0"),
            (Setting::Failback, "deferred"),
            (Setting::Selector, "round-robin:0"),
            (Setting::Selector, "fastest"),
        ] {
            let before = s;
            assert_eq!(s.apply(setting, bad), Err(BadValue), "{setting:?} {bad}");
            assert_eq!(s, before);
        }
    }

    #[test]
    fn unset_follows_the_tunable_and_is_not_shown() {
        let mut t = Values::default();
        let mut s = Settings::default();
        for setting in Setting::ALL {
            assert_eq!(shown(&s, setting), None);
        }
        assert_eq!(s.queue_timeout(&t), 0);
        t.set(geom_multipath_sysctl::Knob::QueueTimeout, 7).unwrap();
        assert_eq!(s.queue_timeout(&t), 7);
        s.apply(Setting::QueueTimeout, "0").unwrap();
        assert_eq!(s.queue_timeout(&t), 0, "a per-geom 0 overrides the tunable");
        assert_eq!(shown(&s, Setting::QueueTimeout).as_deref(), Some("0"));
        s.apply(Setting::QueueTimeout, "default").unwrap();
        assert_eq!(s.queue_timeout(&t), 7);
    }
}
