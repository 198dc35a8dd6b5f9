//! `Retry-After` (RFC 9110 §10.2.3), as both ends of the detector → router wire read it: the
//! router sends it with 503 when its queue is full, and every HTTP client here honours it.

use std::time::{Duration, SystemTime};

/// The wait a `Retry-After` value asks for: delay-seconds or an HTTP-date (a date in the past
/// is no wait). `None` when the value is neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && (0.0..=1e9).contains(&secs))
            .then(|| Duration::from_secs_f64(secs));
    }
    let at =
        ::time::OffsetDateTime::parse(v, &::time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - ::time::OffsetDateTime::from(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn seconds_and_http_dates() {
        let now = SystemTime::now();
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        // 1445412480 is 2015-10-21T07:28:00Z.
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        let before = UNIX_EPOCH + Duration::from_secs(1_445_412_480 - 7);
        assert_eq!(retry_after(date, before), Some(Duration::from_secs(7)));
        let after = UNIX_EPOCH + Duration::from_secs(1_445_412_480 + 60);
        assert_eq!(retry_after(date, after), Some(Duration::ZERO));
    }

    #[test]
    fn garbage_is_none() {
        let now = SystemTime::now();
        for v in ["soon", "-1", "NaN", "inf", "1e300", ""] {
            assert_eq!(retry_after(v, now), None, "{v:?}");
        }
    }
}
