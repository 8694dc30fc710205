//! RFC 3339 timestamps in UTC for listings and `purge --before`, without a
//! date crate: the civil-from-days conversion of Howard Hinnant's
//! `chrono`-compatible algorithms (public domain), for the proleptic
//! Gregorian calendar.

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_ms(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
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
    let num = |s: &str| -> Result<u32, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let (y, mo, d) = match (parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(mo), Some(d)) if y.len() == 4 => (num(y)?, num(mo)?, num(d)?),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut ms = days_from_civil(y as i64, mo, d) * 86_400_000;
    let Some(time) = time else {
        return Ok(ms);
    };
    let (clock, offset_ms) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let split = time.rfind(['+', '-']).ok_or_else(bad)?;
        let (clock, offset) = time.split_at(split);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (oh, om) = offset[1..].split_once(':').ok_or_else(bad)?;
        let (oh, om) = (num(oh)?, num(om)?);
        if oh > 23 || om > 59 {
            return Err(bad());
        }
        (clock, sign * (oh as i64 * 3_600_000 + om as i64 * 60_000))
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (clock, None),
    };
    let mut hms = hms.splitn(3, ':');
    let (h, mi, s) = match (hms.next(), hms.next(), hms.next()) {
        (Some(h), Some(mi), Some(s)) => (num(h)?, num(mi)?, num(s)?),
        _ => return Err(bad()),
    };
    if h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    ms += (h as i64 * 3600 + mi as i64 * 60 + s as i64) * 1000;
    if let Some(fraction) = fraction {
        num(fraction)?;
        let millis: String = fraction.chars().chain("000".chars()).take(3).collect();
        ms += num(&millis)? as i64;
    }
    Ok(ms - offset_ms)
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
    fn round_trips_over_centuries() {
        for ms in [-86_400_001i64, 951_782_400_000, 4_102_444_800_000, 1_234] {
            assert_eq!(parse_time(&format_ms(ms)), Ok(ms));
        }
    }
}
