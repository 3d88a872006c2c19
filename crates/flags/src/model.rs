//! The flag model of PROTOCOL.md section 8: [`Flag`] as stored and returned,
//! [`FlagSpec`] as written, [`RolloutPercent`] and [`Variant`].

use std::collections::HashSet;

use lighthouse_event_store::Timestamp;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bucket::{BUCKETS, VARIANT_SLOTS};
use crate::error::{Error, FieldError};
use crate::limits::Limits;
use crate::names::{self, AGENT_RULE, KEY_RULE, VARIANT_RULE};

/// A flag as stored and as `GET /v1/flags/{key}` returns it.
///
/// Serializes to exactly the JSON of PROTOCOL.md section 8, fields in that order:
/// `{key, description, enabled, rollout_percent, allow, deny, variants, requires,
/// killed, version, updated_at, updated_by}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    /// The flag key, `^[a-z0-9][a-z0-9._-]{0,127}$`.
    pub key: String,
    /// Free text for operators.
    pub description: String,
    /// Whether the percentage split applies; when `false` only `allow` is on.
    pub enabled: bool,
    /// Share of agents on, in percent with at most two decimals.
    pub rollout_percent: RolloutPercent,
    /// Agents always on (unless killed, denied or a prerequisite is off).
    pub allow: Vec<String>,
    /// Agents always off (unless... nothing: only `killed` and prerequisites come first).
    pub deny: Vec<String>,
    /// Variants an agent that is on gets, by weight (weights sum to 1000), or none.
    pub variants: Vec<Variant>,
    /// Keys of flags that must be on for the agent for this flag to be on.
    pub requires: Vec<String>,
    /// The kill switch: when set the flag is off for everyone. Changed only by
    /// kill and unkill, never by a `PUT`.
    pub killed: bool,
    /// Number of changes so far: 1 after creation, +1 per change.
    pub version: u64,
    /// When the last change was made.
    pub updated_at: Timestamp,
    /// The agent that made the last change.
    pub updated_by: String,
}

impl Flag {
    /// The writable part of this flag, as a `PUT` would send it back.
    pub fn spec(&self) -> FlagSpec {
        FlagSpec {
            key: Some(self.key.clone()),
            description: self.description.clone(),
            enabled: self.enabled,
            rollout_percent: self.rollout_percent.as_percent(),
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            variants: self.variants.clone(),
            requires: self.requires.clone(),
        }
    }

    /// Whether the writable fields of `self` equal those of `other` (ignoring
    /// `killed`, `version`, `updated_at`, `updated_by`).
    pub(crate) fn same_settings(&self, other: &Flag) -> bool {
        self.key == other.key
            && self.description == other.description
            && self.enabled == other.enabled
            && self.rollout_percent == other.rollout_percent
            && self.allow == other.allow
            && self.deny == other.deny
            && self.variants == other.variants
            && self.requires == other.requires
    }
}

/// One variant: a name and its weight in thousandths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// The variant name, `^[a-z0-9][a-z0-9._-]{0,63}$`.
    pub name: String,
    /// Its share of agents in thousandths; all weights of a flag sum to 1000.
    pub weight: u32,
}

impl Variant {
    /// A variant called `name` with `weight` thousandths.
    pub fn new(name: impl Into<String>, weight: u32) -> Self {
        Variant {
            name: name.into(),
            weight,
        }
    }
}

/// A rollout percentage with at most two decimals, held exactly as basis points
/// (hundredths of a percent, `0..=10000`), so the threshold of PROTOCOL.md
/// (`round(rollout_percent * 100)`) is exact. On the wire it is a JSON number
/// (`25.0`, `33.33`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RolloutPercent(u16);

impl RolloutPercent {
    /// 0 %: nobody through the split.
    pub const ZERO: RolloutPercent = RolloutPercent(0);
    /// 100 %: everybody through the split.
    pub const FULL: RolloutPercent = RolloutPercent(10_000);

    /// From basis points (`2500` is 25 %); `None` above `10000`.
    pub fn from_basis_points(bp: u16) -> Option<Self> {
        (u32::from(bp) <= BUCKETS).then_some(RolloutPercent(bp))
    }

    /// From a percentage. Refuses values that are not finite, outside `0..=100`,
    /// or that have more than two decimals (the nearest two-decimal value must be
    /// exactly the same number, so `25.12` passes and `25.125` or `1e-9` do not).
    pub fn from_percent(p: f64) -> Result<Self, &'static str> {
        if !p.is_finite() {
            return Err("must be a finite number");
        }
        if !(0.0..=100.0).contains(&p) {
            return Err("must be between 0 and 100");
        }
        let scaled = (p * 100.0).round();
        // `scaled / 100.0` is the double nearest to the two-decimal value, as is
        // the parse of its decimal text, so equality means "at most two decimals".
        if scaled / 100.0 != p {
            return Err("must have at most two decimals");
        }
        // In range 0..=10000 by the checks above.
        Ok(RolloutPercent(scaled as u16))
    }

    /// How many decimals the JSON number `text` has: the digits after the
    /// point of the exact decimal value it denotes, so trailing zeros do not
    /// count and an exponent moves the point (`25.000` and `2.5e1` have 0,
    /// `2512e-2` has 2, `1e-3` has 3). `None` when `text` is not a JSON number.
    ///
    /// [`from_percent`](Self::from_percent) sees the parsed binary64, which
    /// cannot tell `25.0000000000000001` from `25`; a boundary that has the
    /// number's text (the HTTP route) checks this too, so that more than two
    /// decimals is refused whatever they round to.
    pub fn decimal_places(text: &str) -> Option<u64> {
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
            None => (unsigned, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((_, "")) => return None,
            Some((int, frac)) => (int, frac),
            None => (mantissa, ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !digits(int)
            || !digits(frac)
            || (int.len() > 1 && int.starts_with('0'))
        {
            return None;
        }
        // The exponent saturates: past ~10^30 every count below is decided
        // anyway (the number is zero, or has no decimals, or too many).
        let exponent: i128 = match exponent {
            None => 0,
            Some(e) => {
                let (negative, magnitude) = match e.as_bytes().first() {
                    Some(b'-') => (true, &e[1..]),
                    Some(b'+') => (false, &e[1..]),
                    _ => (false, e),
                };
                if magnitude.is_empty() || !digits(magnitude) {
                    return None;
                }
                let magnitude = magnitude.trim_start_matches('0');
                let m: i128 = if magnitude.len() > 30 {
                    10i128.pow(30)
                } else {
                    magnitude.parse().unwrap_or(0)
                };
                if negative { -m } else { m }
            }
        };
        // The value is the digits `int frac` times 10^-(frac.len() - exponent);
        // trailing zeros of those digits take as many places off.
        let trailing_zeros = frac
            .bytes()
            .rev()
            .chain(int.bytes().rev())
            .take_while(|&b| b == b'0')
            .count();
        if trailing_zeros == int.len() + frac.len() {
            return Some(0);
        }
        let places = frac.len() as i128 - exponent - trailing_zeros as i128;
        Some(u64::try_from(places.max(0)).unwrap_or(u64::MAX))
    }

    /// Basis points, `0..=10000`: the threshold a bucket is compared against.
    pub fn basis_points(self) -> u16 {
        self.0
    }

    /// As a percentage.
    pub fn as_percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl Serialize for RolloutPercent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_percent())
    }
}

impl<'de> Deserialize<'de> for RolloutPercent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let p = f64::deserialize(deserializer)?;
        RolloutPercent::from_percent(p)
            .map_err(|m| serde::de::Error::custom(format!("rollout_percent {m}")))
    }
}

/// The writable fields of a flag: the body of `PUT /v1/flags/{key}` without
/// `reason` and `expected_version`.
///
/// Deserialization accepts a flag exactly as `GET` returns it: the read-only
/// `version`, `updated_at`, `updated_by` and `killed` are accepted and ignored;
/// any other unknown field is refused. `rollout_percent` is kept as the raw
/// number so that [`FlagSpec::check`] can report a typed error naming the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SpecWire")]
pub struct FlagSpec {
    /// When present, must equal the key being written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Free text, default empty.
    pub description: String,
    /// Whether the percentage split applies.
    pub enabled: bool,
    /// Percentage of agents on through the split, at most two decimals.
    pub rollout_percent: f64,
    /// Agents always on, default empty.
    pub allow: Vec<String>,
    /// Agents always off, default empty.
    pub deny: Vec<String>,
    /// Variants, default none.
    pub variants: Vec<Variant>,
    /// Prerequisite flag keys, default none.
    pub requires: Vec<String>,
}

impl FlagSpec {
    /// A spec with `enabled` and `rollout_percent` and every list empty.
    pub fn new(enabled: bool, rollout_percent: f64) -> Self {
        FlagSpec {
            key: None,
            description: String::new(),
            enabled,
            rollout_percent,
            allow: Vec::new(),
            deny: Vec::new(),
            variants: Vec::new(),
            requires: Vec::new(),
        }
    }

    /// Checks every field for writing the flag `key`, collecting every broken
    /// rule as a [`FieldError`] (JSON pointers relative to the flag). Returns the
    /// exact percentage. Prerequisite existence and cycles are checked against
    /// the other flags by the store.
    pub fn check(&self, key: &str, limits: &Limits) -> Result<RolloutPercent, Error> {
        let mut errors = Vec::new();
        if !names::is_valid_key(key) {
            errors.push(FieldError::new(
                "/key",
                format!("flag key must be {KEY_RULE}"),
            ));
        }
        if let Some(body_key) = &self.key
            && body_key != key
        {
            errors.push(FieldError::new(
                "/key",
                format!("the body names flag {body_key:?} but the write is for {key:?}"),
            ));
        }
        if self.description.len() > limits.max_description_bytes {
            errors.push(FieldError::new(
                "/description",
                format!(
                    "is {} bytes, the limit is {}",
                    self.description.len(),
                    limits.max_description_bytes
                ),
            ));
        }
        let percent = RolloutPercent::from_percent(self.rollout_percent);
        if let Err(m) = percent {
            errors.push(FieldError::new(
                "/rollout_percent",
                format!("{} {m}", self.rollout_percent),
            ));
        }
        check_list(
            &mut errors,
            "allow",
            &self.allow,
            limits.max_targets,
            names::is_valid_agent,
            AGENT_RULE,
        );
        check_list(
            &mut errors,
            "deny",
            &self.deny,
            limits.max_targets,
            names::is_valid_agent,
            AGENT_RULE,
        );
        check_list(
            &mut errors,
            "requires",
            &self.requires,
            limits.max_requires,
            names::is_valid_key,
            KEY_RULE,
        );
        check_variants(&mut errors, &self.variants, limits.max_variants);
        match percent {
            Ok(p) if errors.is_empty() => Ok(p),
            _ => Err(Error::Invalid { errors }),
        }
    }
}

impl From<&Flag> for FlagSpec {
    fn from(flag: &Flag) -> Self {
        flag.spec()
    }
}

fn check_list(
    errors: &mut Vec<FieldError>,
    field: &str,
    items: &[String],
    max: usize,
    valid: fn(&str) -> bool,
    rule: &str,
) {
    if items.len() > max {
        errors.push(FieldError::new(
            format!("/{field}"),
            format!("has {} entries, the limit is {max}", items.len()),
        ));
        // Do not report per-entry errors of an oversized list: the caller must
        // shorten it first, and the report would be as large as the list.
        return;
    }
    let mut seen = HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if !valid(item) {
            errors.push(FieldError::new(
                format!("/{field}/{i}"),
                format!("must be {rule}"),
            ));
        } else if !seen.insert(item.as_str()) {
            errors.push(FieldError::new(
                format!("/{field}/{i}"),
                format!("{item:?} is listed twice"),
            ));
        }
    }
}

fn check_variants(errors: &mut Vec<FieldError>, variants: &[Variant], max: usize) {
    if variants.is_empty() {
        return;
    }
    if variants.len() > max {
        errors.push(FieldError::new(
            "/variants",
            format!("has {} entries, the limit is {max}", variants.len()),
        ));
        return;
    }
    let mut seen = HashSet::with_capacity(variants.len());
    let mut sum: u64 = 0;
    for (i, v) in variants.iter().enumerate() {
        if !names::is_valid_variant_name(&v.name) {
            errors.push(FieldError::new(
                format!("/variants/{i}/name"),
                format!("must be {VARIANT_RULE}"),
            ));
        } else if !seen.insert(v.name.as_str()) {
            errors.push(FieldError::new(
                format!("/variants/{i}/name"),
                format!("{:?} is listed twice", v.name),
            ));
        }
        sum += u64::from(v.weight);
    }
    if sum != u64::from(VARIANT_SLOTS) {
        errors.push(FieldError::new(
            "/variants",
            format!("weights sum to {sum}, they must sum to {VARIANT_SLOTS}"),
        ));
    }
}

/// What `PUT` may carry: the writable fields, defaults for the lists, and the
/// read-only fields of a `GET` (accepted and ignored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecWire {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    description: String,
    enabled: bool,
    rollout_percent: f64,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    variants: Vec<Variant>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default, rename = "killed")]
    _killed: Option<IgnoredAny>,
    #[serde(default, rename = "version")]
    _version: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_by")]
    _updated_by: Option<IgnoredAny>,
}

impl From<SpecWire> for FlagSpec {
    fn from(w: SpecWire) -> Self {
        FlagSpec {
            key: w.key,
            description: w.description,
            enabled: w.enabled,
            rollout_percent: w.rollout_percent,
            allow: w.allow,
            deny: w.deny,
            variants: w.variants,
            requires: w.requires,
        }
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
