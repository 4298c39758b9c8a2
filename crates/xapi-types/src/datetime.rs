//! XAPI datetimes: `YYYYMMDDTHH:MM:SSZ` out, any ISO 8601 / RFC 3339 form in; the epoch means "unset".
//!
//! Accepted input forms (all case-insensitive for `T`/`Z`):
//! - date: `YYYYMMDD` or `YYYY-MM-DD`;
//! - separator: `T` or a single space; a date alone means midnight;
//! - time: `HH:MM:SS` or `HHMMSS`, optionally `HH:MM` / `HHMM`, with optional fraction `.fff` / `,fff`
//!   (truncated towards the past);
//! - zone: `Z`, `±HH:MM`, `±HHMM`, `±HH`, or nothing (UTC).
//!
//! Leap second `60` is accepted and rolls into the next minute.

/// The "unset" datetime.
pub const EPOCH: &str = "19700101T00:00:00Z";

/// Days since 1970-01-01 of a proleptic Gregorian civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date `(year, month, day)` of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Format seconds since the Unix epoch (UTC) in XAPI's form.
pub fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A tiny cursor over ASCII bytes.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + n)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(s.iter().fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0')))
    }

    fn at_end(&self) -> bool {
        self.i == self.b.len()
    }
}

/// Parse any accepted form into seconds since the Unix epoch (zoneless = UTC). `None` if malformed.
pub fn parse_unix(s: &str) -> Option<i64> {
    let mut c = Cursor {
        b: s.trim().as_bytes(),
        i: 0,
    };
    // Date.
    let year = i64::from(c.digits(4)?);
    let hyphens = c.eat(b'-');
    let month = c.digits(2)?;
    if hyphens && !c.eat(b'-') {
        return None;
    }
    let day = c.digits(2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut secs_of_day: i64 = 0;
    let mut offset: i64 = 0;
    if !c.at_end() {
        if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
            return None;
        }
        // Time.
        let hour = c.digits(2)?;
        let colons = c.eat(b':');
        let minute = c.digits(2)?;
        let mut second = 0;
        let has_seconds = if colons {
            c.eat(b':')
        } else {
            matches!(c.peek(), Some(b'0'..=b'9'))
        };
        if has_seconds {
            second = c.digits(2)?;
            if c.eat(b'.') || c.eat(b',') {
                // Fraction: at least one digit, truncated.
                let start = c.i;
                while matches!(c.peek(), Some(b'0'..=b'9')) {
                    c.i += 1;
                }
                if c.i == start {
                    return None;
                }
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        secs_of_day = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
        // Zone.
        match c.peek() {
            None => {}
            Some(b'Z' | b'z') => {
                c.i += 1;
            }
            Some(sign @ (b'+' | b'-')) => {
                c.i += 1;
                let oh = c.digits(2)?;
                let om = if c.eat(b':') {
                    c.digits(2)?
                } else if c.at_end() {
                    0
                } else {
                    c.digits(2)?
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                let o = i64::from(oh) * 3600 + i64::from(om) * 60;
                offset = if sign == b'+' { o } else { -o };
            }
            Some(_) => return None,
        }
        if !c.at_end() {
            return None;
        }
    }
    Some(days_from_civil(year, month, day) * 86_400 + secs_of_day - offset)
}

/// Normalise any accepted form into XAPI's output form.
pub fn normalise(s: &str) -> Option<String> {
    parse_unix(s).map(format_unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_round_trip() {
        assert_eq!(format_unix(0), EPOCH);
        assert_eq!(parse_unix(EPOCH), Some(0));
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_unix(1_742_357_784), "20250319T04:16:24Z");
        assert_eq!(format_unix(951_782_400), "20000229T00:00:00Z");
        assert_eq!(format_unix(-1), "19691231T23:59:59Z");
        assert_eq!(format_unix(253_402_300_799), "99991231T23:59:59Z");
    }

    #[test]
    fn parses_all_forms() {
        let t = 1_742_357_784;
        for s in [
            "20250319T04:16:24Z",
            "20250319T04:16:24",
            "2025-03-19T04:16:24Z",
            "2025-03-19T04:16:24z",
            "2025-03-19t04:16:24",
            "2025-03-19 04:16:24",
            "2025-03-19T04:16:24.999Z",
            "2025-03-19T04:16:24,5",
            "2025-03-19T06:16:24+02:00",
            "2025-03-19T06:16:24+0200",
            "2025-03-19T06:16:24+02",
            "2025-03-18T23:16:24-05:00",
            "20250319T041624Z",
            "  20250319T04:16:24Z ",
        ] {
            assert_eq!(parse_unix(s), Some(t), "{s}");
        }
        assert_eq!(parse_unix("2025-03-19"), Some(t - 4 * 3600 - 16 * 60 - 24));
        assert_eq!(parse_unix("20250319T04:16"), Some(t - 24));
    }

    #[test]
    fn round_trips_many_instants() {
        let mut s: i64 = -86_400 * 800;
        while s < 4_000_000_000 {
            assert_eq!(parse_unix(&format_unix(s)), Some(s));
            s += 7_654_321;
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "garbage",
            "2025",
            "2025-03-1904:16:24Z",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-00-10T00:00:00Z",
            "2025-03-19T24:00:00Z",
            "2025-03-19T23:60:00Z",
            "2025-03-19T23:00:00Q",
            "2025-03-19T23:00:00Z junk",
            "2025-03-19T23:00:00.Z",
            "2025-03-19T23:00:00+25:00",
            "2025-03-19T",
            "2025-0319T00:00:00Z",
            "٢٠٢٥-03-19",
        ] {
            assert_eq!(parse_unix(s), None, "{s}");
        }
    }

    #[test]
    fn normalise_forms() {
        assert_eq!(
            normalise("2024-02-29T12:00:00+01:00").as_deref(),
            Some("20240229T11:00:00Z")
        );
        assert_eq!(normalise("1970-01-01").as_deref(), Some(EPOCH));
        assert_eq!(normalise("nope"), None);
    }
}
