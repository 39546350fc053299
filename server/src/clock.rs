//! Timestamps as Keyward stores and shows them: RFC 3339, UTC, millisecond precision, so that
//! stored strings sort in time order.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Now, as a timestamp string, and as Unix seconds.
pub fn now() -> (String, i64) {
    let t = OffsetDateTime::now_utc();
    (format(t), t.unix_timestamp())
}

/// Formats a time the way Keyward stores it.
pub fn format(t: OffsetDateTime) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses an RFC 3339 time given by a caller and returns it in the stored format.
pub fn normalize(input: &str) -> Result<String, String> {
    OffsetDateTime::parse(input, &Rfc3339)
        .map(format)
        .map_err(|e| {
            format!("{input:?} is not an RFC 3339 time ({e}); example: 2026-01-31T12:00:00Z")
        })
}

/// Parses an RFC 3339 time given by a caller into Unix seconds.
pub fn parse_unix(input: &str) -> Result<i64, String> {
    OffsetDateTime::parse(input, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            format!("{input:?} is not an RFC 3339 time ({e}); example: 2026-01-31T12:00:00Z")
        })
}

/// Formats Unix seconds the way Keyward shows times.
pub fn format_unix(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(format)
        .unwrap_or_else(|_| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_format_sorts_and_normalizes_offsets() {
        assert_eq!(
            normalize("2026-01-31T13:00:00+01:00").unwrap(),
            "2026-01-31T12:00:00.000Z"
        );
        assert!(normalize("yesterday").is_err());
        let unix = parse_unix("2026-01-31T13:00:00+01:00").unwrap();
        assert_eq!(format_unix(unix), "2026-01-31T12:00:00.000Z");
        assert!(parse_unix("2026-01-31").is_err());
        let (a, _) = now();
        assert_eq!(a.len(), "2026-01-31T12:00:00.000Z".len());
    }
}
