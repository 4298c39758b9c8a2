//! Durations for `--expiresIn`, with the grammar of the `ms` npm package xo-server uses: a number of
//! milliseconds, or `<n><unit>` / `<n> <unit>` with ms, s, m, h, d, w, y and their long forms.

/// Milliseconds, or `None` when unparsable or not positive.
pub fn parse_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 100 {
        return None;
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..split].parse().ok()?;
    let factor = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1e3,
        "m" | "min" | "mins" | "minute" | "minutes" => 60e3,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600e3,
        "d" | "day" | "days" => 86400e3,
        "w" | "week" | "weeks" => 7.0 * 86400e3,
        "y" | "yr" | "yrs" | "year" | "years" => 365.25 * 86400e3,
        _ => return None,
    };
    let ms = n * factor;
    (ms.is_finite() && ms > 0.0).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_ms("30d"), Some(30.0 * 86400e3));
        assert_eq!(parse_ms("12h"), Some(12.0 * 3600e3));
        assert_eq!(parse_ms("1 hour"), Some(3600e3));
        assert_eq!(parse_ms("90000"), Some(90000.0));
        assert_eq!(parse_ms("1.5 days"), Some(1.5 * 86400e3));
        for bad in ["", "soon", "10 fortnights", "-1d", "0", "d"] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
    }
}
