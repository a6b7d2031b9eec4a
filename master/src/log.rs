//! Log lines: one `write(2)` per line on standard error, so lines from different processes never
//! interleave, and the C `ctime()` timestamp uWSGI puts in front of some of them.

use std::io::Write;
use std::sync::Mutex;

/// `log-date`: `Some("")` for the `ctime()` form, `Some(format)` for `strftime`.
static DATE_FORMAT: Mutex<Option<String>> = Mutex::new(None);

/// Sets the `log-date` prefix of [`line()`] (the master calls it at startup and on reload).
pub fn set_date_format(format: Option<String>) {
    *DATE_FORMAT.lock().unwrap_or_else(|e| e.into_inner()) = format;
}

/// Writes one lifecycle line (a newline is added) to standard error with a single `write(2)`,
/// prefixed as `log-date` says.
pub fn line(text: &str) {
    let prefix = match DATE_FORMAT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_deref()
    {
        None => None,
        Some("") => Some(format!("{} - ", ctime_now())),
        Some(format) => Some(strftime_now(format)),
    };
    match prefix {
        Some(p) => raw(&format!("{p}{text}")),
        None => raw(text),
    }
}

/// The current local time with a `strftime` format.
fn strftime_now(format: &str) -> String {
    let Ok(cformat) = std::ffi::CString::new(format) else {
        return String::new();
    };
    let now: libc::time_t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as libc::time_t);
    let mut buf = [0u8; 256];
    // SAFETY: localtime_r and strftime write into buffers we own, bounded by their sizes.
    let len = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), cformat.as_ptr(), &tm)
    };
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// Writes one line as is.
fn raw(text: &str) {
    let mut buf = Vec::with_capacity(text.len() + 1);
    buf.extend_from_slice(text.as_bytes());
    buf.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&buf);
}

/// Writes `<ctime> - <text>`, the form uWSGI uses for its "verbose" lines (whatever `log-date`
/// says).
pub fn dated(text: &str) {
    raw(&format!("{} - {text}", ctime_now()));
}

/// The 24-character C `ctime()` form of the current local time (`Sat Nov 28 16:22:27 2026`).
pub fn ctime_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ctime(now as i64)
}

/// The `ctime()` form of Unix seconds `t` in local time.
pub fn ctime(t: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let time: libc::time_t = t as libc::time_t;
    // SAFETY: localtime_r writes into the zeroed tm we own; it is thread-safe.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&time, &mut tm);
        tm
    };
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[tm.tm_wday.rem_euclid(7) as usize],
        MONTHS[tm.tm_mon.rem_euclid(12) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn strftime_formats() {
        let year = super::strftime_now("%Y");
        assert_eq!(year.len(), 4);
        assert!(super::ctime_now().ends_with(&year));
    }

    #[test]
    fn ctime_has_the_c_shape() {
        let s = super::ctime_now();
        assert_eq!(s.len(), 24, "{s}");
        let parts: Vec<&str> = s.split_whitespace().collect();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[3].len(), 8);
    }
}
