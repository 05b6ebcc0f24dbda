//! Cheap identifiers and timestamps for the benchmark tools: random version 4
//! UUIDs and RFC 3339 UTC timestamps with millisecond precision, both formatted
//! into fixed-size stack buffers so that hot paths do not allocate for them.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A random (version 4, RFC 9562 variant) UUID in its 36-character text form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Uuid([u8; 36]);

impl Uuid {
    /// A new random UUID from the thread-local fast generator (not cryptographic).
    pub fn new_v4() -> Self {
        Self::from_random(fastrand::u128(..))
    }

    /// Builds a version 4 UUID from 128 random bits (version and variant bits
    /// are overwritten).
    pub fn from_random(bits: u128) -> Self {
        let bits = (bits & !(0xF << 76)) | (0x4 << 76);
        let bits = (bits & !(0x3 << 62)) | (0x2 << 62);
        let mut out = [0u8; 36];
        let mut j = 0;
        for (i, b) in bits.to_be_bytes().iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out[j] = b'-';
                j += 1;
            }
            out[j] = HEX[usize::from(b >> 4)];
            out[j + 1] = HEX[usize::from(b & 0xF)];
            j += 2;
        }
        Self(out)
    }

    /// The UUID as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("UUID text is ASCII")
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 3339 UTC timestamp with milliseconds, e.g. `2025-01-31T12:00:00.123Z`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Timestamp([u8; 24]);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self::from_unix_millis(ms)
    }

    /// Formats milliseconds since the Unix epoch (years past 9999 are not supported
    /// and wrap to four digits).
    pub fn from_unix_millis(ms: u64) -> Self {
        let secs = ms / 1000;
        let millis = ms % 1000;
        let days = secs / 86_400;
        let sod = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        put_digits(&mut out[0..4], year);
        put_digits(&mut out[5..7], month);
        put_digits(&mut out[8..10], day);
        put_digits(&mut out[11..13], sod / 3600);
        put_digits(&mut out[14..16], sod / 60 % 60);
        put_digits(&mut out[17..19], sod % 60);
        put_digits(&mut out[20..23], millis);
        Self(out)
    }

    /// The timestamp as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("timestamp text is ASCII")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes `value` as zero-padded decimal digits filling `dst` (keeping the low digits).
fn put_digits(dst: &mut [u8], mut value: u64) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + u8::try_from(value % 10).expect("a digit");
        value /= 10;
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after
/// Howard Hinnant's `civil_from_days`, restricted to dates on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339_millis() {
        assert_eq!(Timestamp::from_unix_millis(0).as_str(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::from_unix_millis(1_700_000_000_123).as_str(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::from_unix_millis(951_782_400_000).as_str(), "2000-02-29T00:00:00.000Z");
        assert_eq!(Timestamp::from_unix_millis(1_735_689_599_999).as_str(), "2024-12-31T23:59:59.999Z");
    }

    #[test]
    fn uuids_are_version_4() {
        let u = Uuid::from_random(u128::MAX);
        assert_eq!(u.as_str(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let u = Uuid::from_random(0);
        assert_eq!(u.as_str(), "00000000-0000-4000-8000-000000000000");
        assert_ne!(Uuid::new_v4(), Uuid::new_v4());
    }
}
