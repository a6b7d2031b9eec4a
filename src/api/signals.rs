//! Service signals sent to clients (section 4.5): `Backoff`, and the end-of-service `Alert`
//! (soft before the `eos` date, 410 hard end after it).

use serde_json::json;

/// Local wall-clock time as naive seconds (what Kinto compares `eos` with).
fn local_naive_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    now + utc_offset_seconds(now)
}

/// The local UTC offset at `epoch_secs`, from the C library's time zone rules.
pub fn utc_offset_seconds(epoch_secs: i64) -> i64 {
    let t = epoch_secs as libc::time_t;
    // SAFETY: localtime_r only writes the provided `tm`.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Parses `YYYY-MM-DD[(T| )HH:MM[:SS]]` into naive seconds; other shapes are not understood.
fn parse_naive(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = match text.find(['T', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mut parts = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86400;
    if let Some(time) = time {
        let time = time.split(['+', 'Z', '.']).next().unwrap_or("");
        let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
        secs += hms.next().flatten().unwrap_or(0) * 3600;
        secs += hms.next().flatten().unwrap_or(0) * 60;
        secs += hms.next().flatten().unwrap_or(0);
    }
    Some(secs)
}

/// End-of-service configuration, parsed once.
#[derive(Debug, Clone)]
pub struct EndOfService {
    at: i64,
    message: Option<String>,
    url: String,
}

impl EndOfService {
    pub fn new(
        eos: Option<&str>,
        message: Option<&str>,
        url: Option<&str>,
        docs: &str,
    ) -> Option<Self> {
        let eos = eos?;
        let at = parse_naive(eos).or_else(|| {
            log::warn!("eos date {eos:?} not understood; ignored");
            None
        })?;
        Some(EndOfService {
            at,
            message: message.map(str::to_string),
            url: url.unwrap_or(docs).to_string(),
        })
    }

    /// True once the end-of-service date is reached.
    pub fn reached(&self) -> bool {
        local_naive_now() >= self.at
    }

    /// The `Alert` header value for the current time.
    pub fn alert(&self) -> String {
        let code = if self.reached() {
            "hard-eol"
        } else {
            "soft-eol"
        };
        json!({"code": code, "message": self.message, "url": self.url}).to_string()
    }
}

/// The `Backoff` header value, if this response gets one.
pub fn backoff(value: Option<&str>, percentage: Option<u32>) -> Option<String> {
    let value = value?;
    if let Some(percentage) = percentage {
        if rand::random::<u32>() % 100 >= percentage {
            return None;
        }
    }
    Some(value.to_string())
}
