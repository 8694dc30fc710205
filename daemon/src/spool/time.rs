//! RFC 3339 timestamps in UTC for listings and `purge --before`, with
//! `jiff` doing the calendar (and refusing dates that do not exist, such
//! as February 30th).

use jiff::civil::Date;
use jiff::{tz::TimeZone, Timestamp};

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_ms(ms: i64) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        // Beyond jiff's range (years -9999..=9999): the raw number says more
        // than a clamped date would.
        Err(_) => format!("@{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000)),
    }
}

/// Parses a time for `--before`: RFC 3339 (`2024-05-01T12:00:00Z`, with
/// optional fraction and a `Z` or `±HH:MM` offset), a bare date
/// (`2024-05-01`, midnight UTC), or `@SECONDS` since the epoch. Returns ms
/// since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let bad = || {
        format!("{text:?} is not a time: use RFC 3339 (2024-05-01T12:00:00Z), a date (2024-05-01) or @UNIX_SECONDS")
    };
    if let Some(secs) = text.strip_prefix('@') {
        return secs
            .parse::<i64>()
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .ok_or_else(bad);
    }
    if let Ok(date) = text.parse::<Date>() {
        // A bare date only: jiff would also read a date out of a datetime.
        if text.len() == 10 {
            return date
                .to_zoned(TimeZone::UTC)
                .map(|z| z.timestamp().as_millisecond())
                .map_err(|_| bad());
        }
    }
    text.parse::<Timestamp>()
        .map(|ts| ts.as_millisecond())
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.1+01:00"),
            Ok(1_700_000_000_100)
        );
        assert_eq!(parse_time("2023-11-14"), Ok(1_699_920_000_000));
        assert_eq!(parse_time("@1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        for bad in ["", "yesterday", "2023-13-01", "2023-11-14T25:00:00Z", "@x"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_that_do_not_exist_are_refused() {
        for bad in ["2023-02-29", "2023-02-30T00:00:00Z", "2023-04-31"] {
            let err = parse_time(bad).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn round_trips_over_centuries() {
        for ms in [-86_400_001i64, 951_782_400_000, 4_102_444_800_000, 1_234] {
            assert_eq!(parse_time(&format_ms(ms)), Ok(ms));
        }
    }
}
