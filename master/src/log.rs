//! Log lines: one `write(2)` per line on standard error, so lines from different processes never
//! interleave, and the C `ctime()` timestamp uWSGI puts in front of some of them.

use std::io::Write;

/// Writes one line (a newline is added) to standard error with a single `write(2)`.
pub fn line(text: &str) {
    let mut buf = Vec::with_capacity(text.len() + 1);
    buf.extend_from_slice(text.as_bytes());
    buf.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&buf);
}

/// Writes `<ctime> - <text>`, the form uWSGI uses for its "verbose" lines.
pub fn dated(text: &str) {
    line(&format!("{} - {text}", ctime_now()));
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
    fn ctime_has_the_c_shape() {
        let s = super::ctime_now();
        assert_eq!(s.len(), 24, "{s}");
        let parts: Vec<&str> = s.split_whitespace().collect();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[3].len(), 8);
    }
}
