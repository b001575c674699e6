//! Disruptions only inside a maintenance window (days, start and end time, in
//! a time zone). A window whose end is before its start runs past midnight
//! and belongs to the day it starts on.

use std::fmt;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{ToSpan, ZonedDateTime as Zoned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Context, deny, pass};
use crate::verdict::Finding;

/// Rule id.
pub const ID: &str = "reboot-window";

/// Parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// Days the window opens on (`mon` .. `sun`); empty means every day.
    #[serde(default)]
    pub days: Vec<Day>,
    /// Opening time, `HH:MM`; equal to `end` for the whole day.
    pub start: Clock,
    /// Closing time, `HH:MM`.
    pub end: Clock,
    /// IANA time zone, UTC by default.
    #[serde(default)]
    pub time_zone: Zone,
}

/// A weekday written as `mon`, `monday`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day(pub Weekday);

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?.to_ascii_lowercase();
        DAYS.iter()
            .find(|(short, _)| {
                s.len() >= 3 && short.starts_with(&s[..3]) && day_full(short).starts_with(&s)
            })
            .map(|(_, w)| Day(*w))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a weekday (mon, tue, wed, thu, fri, sat, sun)"
                ))
            })
    }
}

fn day_full(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let name = DAYS
            .iter()
            .find(|(_, w)| *w == self.0)
            .map(|(n, _)| *n)
            .unwrap_or("mon");
        s.serialize_str(name)
    }
}

/// A time of day, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Clock(pub Time);

impl<'de> Deserialize<'de> for Clock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<Time>()
            .map(Clock)
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a time of day (HH:MM)")))
    }
}

impl Serialize for Clock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.strftime("%H:%M"))
    }
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.strftime("%H:%M"))
    }
}

/// An IANA time zone, checked when the policy loads.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Default for Zone {
    fn default() -> Self {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let tz = TimeZone::get(&name)
            .map_err(|e| serde::de::Error::custom(format!("unknown time zone `{name}`: {e}")))?;
        Ok(Zone { name, tz })
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl Default for Params {
    /// Every day, all day: no restriction until days or times are set.
    fn default() -> Self {
        Params {
            days: Vec::new(),
            start: Clock(Time::midnight()),
            end: Clock(Time::midnight()),
            time_zone: Zone::default(),
        }
    }
}

impl Params {
    fn day_ok(&self, w: Weekday) -> bool {
        self.days.is_empty() || self.days.iter().any(|d| d.0 == w)
    }

    /// Whether `local` is inside the window.
    pub fn contains(&self, local: &Zoned) -> bool {
        let t = local.time();
        let (s, e) = (self.start.0, self.end.0);
        if s == e {
            // Equal ends: the whole day.
            self.day_ok(local.weekday())
        } else if s < e {
            s <= t && t < e && self.day_ok(local.weekday())
        } else if t >= s {
            self.day_ok(local.weekday())
        } else if t < e {
            self.day_ok(local.weekday().previous())
        } else {
            false
        }
    }

    /// When the window next opens after `local`.
    pub fn next_open(&self, local: &Zoned) -> Option<Zoned> {
        (0..8).find_map(|d| {
            let date = local.date().checked_add(d.days()).ok()?;
            let open = date
                .to_datetime(self.start.0)
                .to_zoned_datetime(self.tz().clone())
                .ok()?;
            (open > *local && self.day_ok(open.weekday())).then_some(open)
        })
    }

    fn tz(&self) -> &TimeZone {
        &self.time_zone.tz
    }
}

/// Check.
pub fn check(ctx: &Context<'_>, p: &Params, out: &mut Vec<Finding>) {
    let local = ctx.now.to_zoned_datetime(p.tz().clone());
    let desc = format!(
        "{}{}-{} {}",
        if p.days.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = p
                .days
                .iter()
                .map(|d| format!("{:?}", d.0)[..3].to_string())
                .collect();
            format!("{} ", names.join(","))
        },
        p.start,
        p.end,
        p.time_zone.name
    );
    if p.contains(&local) {
        out.push(pass(
            ID,
            format!(
                "{} is inside the maintenance window {desc}",
                local.strftime("%a %H:%M")
            ),
        ));
    } else {
        let f = deny(
            ID,
            format!(
                "{} is outside the maintenance window {desc}",
                local.strftime("%a %H:%M %Z")
            ),
        );
        out.push(match p.next_open(&local) {
            Some(n) => f.fix(format!("wait until {}", n.strftime("%a %Y-%m-%d %H:%M %Z"))),
            None => f,
        });
    }
}
