//! XAPI datetimes: `YYYYMMDDTHH:MM:SSZ` out, any ISO 8601 / RFC 3339 form in; the epoch means "unset".

/// The "unset" datetime.
pub const EPOCH: &str = "19700101T00:00:00Z";

/// Format seconds since the Unix epoch (UTC) in XAPI's form.
pub fn format_unix(secs: i64) -> String {
    let _ = secs;
    todo!()
}

/// Parse any accepted form into seconds since the Unix epoch (zoneless = UTC). `None` if malformed.
pub fn parse_unix(s: &str) -> Option<i64> {
    let _ = s;
    todo!()
}

/// Normalise any accepted form into XAPI's output form.
pub fn normalise(s: &str) -> Option<String> {
    parse_unix(s).map(format_unix)
}
