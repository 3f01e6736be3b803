//! Times as the store keeps them (Unix seconds) and as operators write them
//! (`90d`, `12h`, RFC 3339).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds.
pub fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Upper bound on a relative duration: 100 years.
const MAX_DURATION_S: i64 = 100 * 366 * 86_400;

/// `90d`, `12h`, `30m`, `45s`, `2w` (one number and one unit) into seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}`: add a unit: s, m, h, d or w (e.g. 90d)"))?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a number then a unit, e.g. 90d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`; use s, m, h, d or w")),
    };
    match n.checked_mul(mult) {
        Some(v) if v > 0 && v <= MAX_DURATION_S => Ok(v),
        _ => Err(format!("`{s}`: must be between 1s and 100 years")),
    }
}

/// An absolute time: RFC 3339 (`2027-01-31T00:00:00Z`) or a duration from `now`.
pub fn parse_until(s: &str, now: i64) -> Result<i64, String> {
    let t = s.trim();
    if t.contains('T') || t.contains('-') {
        let dt = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                format!("`{t}`: not an RFC 3339 time ({e}); e.g. 2027-01-31T00:00:00Z or 30d")
            })?;
        let v = dt.unix_timestamp();
        if v <= now {
            return Err(format!("`{t}` is in the past"));
        }
        return Ok(v);
    }
    let d = parse_duration(t)?;
    now.checked_add(d)
        .ok_or_else(|| format!("`{t}`: too far in the future"))
}

/// Unix seconds as RFC 3339 UTC (`2026-12-01T10:00:00Z`).
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap(), 90 * 86_400);
        assert_eq!(parse_duration("12h").unwrap(), 43_200);
        assert_eq!(parse_duration("2w").unwrap(), 14 * 86_400);
        assert_eq!(parse_duration(" 45s ").unwrap(), 45);
        for bad in [
            "",
            "d",
            "90",
            "0d",
            "-1d",
            "1y",
            "99999999999999999999d",
            "1.5h",
            "9999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn untils() {
        let now = 1_800_000_000;
        assert_eq!(parse_until("1h", now).unwrap(), now + 3600);
        assert_eq!(
            parse_until("2027-01-31T00:00:00Z", now).unwrap(),
            1_801_353_600
        );
        assert!(
            parse_until("2020-01-01T00:00:00Z", now)
                .unwrap_err()
                .contains("past")
        );
        assert!(parse_until("2027-13-01T00:00:00Z", now).is_err());
        assert_eq!(rfc3339(1_801_353_600), "2027-01-31T00:00:00Z");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,40}", now in proptest::prelude::any::<i64>()) {
            let _ = parse_duration(&s);
            let _ = parse_until(&s, now);
            let _ = rfc3339(now);
        }

        #[test]
        fn durations_round_trip(n in 1i64..5_000, unit in proptest::sample::select(vec![("s", 1i64), ("m", 60), ("h", 3600), ("d", 86_400), ("w", 604_800)])) {
            let v = parse_duration(&format!("{n}{}", unit.0)).unwrap();
            proptest::prop_assert_eq!(v, n * unit.1);
        }
    }
}
