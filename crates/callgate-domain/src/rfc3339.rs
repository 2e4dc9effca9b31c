//! A timestamp as RFC 3339 text in UTC, exactly as jiff displays it
//! (`2025-07-14T09:30:00.123456Z`: fractional seconds only when not zero, without trailing
//! zeros).
//!
//! Every trigger and every status change writes a few timestamps into JSON (the answer, the
//! run's history); jiff's general printer cost about 850 instructions for each. Years 0000 to
//! 9999 are written here with plain arithmetic, every other time by jiff.

use jiff::Timestamp;

/// Seconds from 1970-01-01T00:00:00Z to 10000-01-01T00:00:00Z: the end of four-digit years.
const END_OF_YEAR_9999: i64 = 253_402_300_800;

/// The text of `t`, in a buffer on the stack.
struct Text {
    buf: [u8; 32],
    len: usize,
}

impl Text {
    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// "00" to "99": two digits per step instead of a division per digit.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `value % 100` as two digits at `buf[at..at + 2]`.
fn put2(buf: &mut [u8; 32], at: usize, value: u32) {
    let i = (value % 100) as usize * 2;
    buf[at..at + 2].copy_from_slice(&PAIRS[i..i + 2]);
}

/// The civil date of a day counted from 1970-01-01 (0 ≤ days), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

/// `t` as jiff's `Display` writes it; `None` outside 1970–9999 (the caller asks jiff).
fn fast(t: Timestamp) -> Option<Text> {
    let secs = t.as_second();
    let nanos = t.subsec_nanosecond();
    if !(0..END_OF_YEAR_9999).contains(&secs) || nanos < 0 {
        return None;
    }
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = (secs % 86_400) as u32;
    let mut buf = *b"0000-00-00T00:00:00.000000000Z\0\0";
    put2(&mut buf, 0, year / 100);
    put2(&mut buf, 2, year);
    put2(&mut buf, 5, month);
    put2(&mut buf, 8, day);
    put2(&mut buf, 11, of_day / 3_600);
    put2(&mut buf, 14, of_day / 60 % 60);
    put2(&mut buf, 17, of_day % 60);
    let len = if nanos == 0 {
        buf[19] = b'Z';
        20
    } else {
        let n = nanos as u32;
        buf[20] = b'0' + (n / 100_000_000) as u8;
        put2(&mut buf, 21, n / 1_000_000);
        put2(&mut buf, 23, n / 10_000);
        put2(&mut buf, 25, n / 100);
        put2(&mut buf, 27, n);
        let mut end = 29;
        while buf[end - 1] == b'0' {
            end -= 1;
        }
        buf[end] = b'Z';
        end + 1
    };
    Some(Text { buf, len })
}

/// Appends `t` as a JSON string (quoted): what `serialize` writes through serde_json, without
/// a serializer (the text is ASCII digits and separators, which JSON never escapes).
pub fn push_quoted(t: Timestamp, out: &mut String) {
    out.push('"');
    match fast(t) {
        Some(text) => out.push_str(text.as_str()),
        None => {
            use std::fmt::Write;
            // Writing into a String cannot fail.
            let _ = write!(out, "{t}");
        }
    }
    out.push('"');
}

/// For `#[serde(serialize_with = "callgate_domain::rfc3339::serialize")]` on a `Timestamp`
/// field: the same string jiff's own `Serialize` writes.
pub fn serialize<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    match fast(*t) {
        Some(text) => s.serialize_str(text.as_str()),
        None => s.collect_str(t),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// `t` as text: this module's fast form, else jiff's.
    fn to_string(t: Timestamp) -> String {
        match fast(t) {
            Some(text) => text.as_str().to_owned(),
            None => t.to_string(),
        }
    }

    fn check(t: Timestamp) {
        assert_eq!(to_string(t), t.to_string(), "{t:?}");
        let mut quoted = String::from("x");
        push_quoted(t, &mut quoted);
        assert_eq!(
            quoted,
            format!("x{}", serde_json::to_string(&t).unwrap()),
            "{t:?}"
        );
    }

    #[test]
    fn edges_match_jiff() {
        for secs in [
            0,
            1,
            59,
            86_399,
            86_400,
            951_782_400, // 2000-02-29
            951_868_800, // 2000-03-01
            4_107_456_000,
            END_OF_YEAR_9999 - 1,
            END_OF_YEAR_9999,
            -1,
            -86_400,
        ] {
            for nanos in [0, 1, 10, 100_000, 120_000, 123_456_000, 999_999_999] {
                let n = if secs < 0 { -nanos } else { nanos };
                // Past jiff's own range (the end of year 9999) there is nothing to write.
                if let Ok(t) = Timestamp::new(secs, n) {
                    check(t);
                }
            }
        }
        check(Timestamp::MIN);
        check(Timestamp::MAX);
    }

    #[test]
    fn serde_writes_what_jiff_writes() {
        let t = Timestamp::from_microsecond(1_752_485_400_123_450).unwrap();
        #[derive(serde::Serialize)]
        struct Both {
            #[serde(serialize_with = "serialize")]
            fast: Timestamp,
            jiff: Timestamp,
        }
        let v = serde_json::to_value(Both { fast: t, jiff: t }).unwrap();
        assert_eq!(v["fast"], v["jiff"]);
        assert_eq!(v["fast"], "2025-07-14T09:30:00.12345Z");
    }

    proptest! {
        #[test]
        fn any_time_matches_jiff(secs in -377_705_000_000i64..253_402_207_200, nanos in 0i32..1_000_000_000) {
            let n = if secs < 0 { -nanos } else { nanos };
            check(Timestamp::new(secs, n).unwrap());
        }

        #[test]
        fn microsecond_times_match_jiff(us in 0i64..253_402_207_200_000_000) {
            check(Timestamp::from_microsecond(us).unwrap());
        }
    }
}
