//! Dead-letter file: one JSON object per line for records given up on.
//!
//! ```json
//! {"time":"2026-11-28T08:00:00.123Z","consumer":"slack","seq":42,
//!  "appended_at":"2026-11-28T07:00:00.000Z","reason":"older than max_age 1h",
//!  "record":{...the alert JSON...}}
//! ```
//! A payload that is not JSON is stored as `"payload"` (UTF-8 text) or
//! `"payload_hex"`.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::Ordering;

use crate::commit::now_ms;
use crate::error::{IoContext, Result};
use crate::reader::Record;
use crate::spool::{Inner, lock};

pub(crate) fn write(inner: &Inner, consumer: &str, record: &Record, reason: &str) -> Result<()> {
    let mut line = serde_json::Map::new();
    line.insert("time".into(), rfc3339_ms(now_ms()).into());
    line.insert("consumer".into(), consumer.into());
    line.insert("seq".into(), record.seq.into());
    line.insert(
        "appended_at".into(),
        rfc3339_ms(record.appended_at_ms).into(),
    );
    line.insert("reason".into(), reason.into());
    match serde_json::from_slice::<serde_json::Value>(&record.payload) {
        Ok(v) => {
            line.insert("record".into(), v);
        }
        Err(_) => match std::str::from_utf8(&record.payload) {
            Ok(s) => {
                line.insert("payload".into(), s.into());
            }
            Err(_) => {
                let hex: String = record.payload.iter().map(|b| format!("{b:02x}")).collect();
                line.insert("payload_hex".into(), hex.into());
            }
        },
    }
    let mut bytes = serde_json::Value::Object(line).to_string().into_bytes();
    bytes.push(b'\n');

    let path = &inner.dead_letter_path;
    let mut guard = lock(&inner.dead_letter);
    if guard.is_none() {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .at(path)?;
        *guard = Some(f);
    }
    if let Some(f) = guard.as_mut() {
        f.write_all(&bytes).and_then(|()| f.sync_data()).at(path)?;
    }
    drop(guard);
    inner.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(consumer, seq = record.seq, reason, file = ?path, "record moved to dead-letter file");
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from unix milliseconds (UTC).
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ms;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // From Falco's documentation example: evt.time 1685022245478445995 ns.
        assert_eq!(rfc3339_ms(1_685_022_245_478), "2023-05-25T13:44:05.478Z");
        assert_eq!(rfc3339_ms(951_782_400_001), "2000-02-29T00:00:00.001Z");
    }
}
