//! Local time rendering for log lines (`%(asctime)s`, `datefmt`, the summary's `time`), through
//! the C library so that `TZ` and `/etc/localtime` apply as they do for Python.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds and microseconds since the epoch.
pub fn split(time: SystemTime) -> (i64, u32) {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
        Err(_) => (0, 0),
    }
}

/// `strftime(format)` of the local time of `secs`.
pub fn strftime(secs: i64, format: &str) -> String {
    let Ok(c_format) = std::ffi::CString::new(format) else {
        return String::new();
    };
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes into the zeroed `tm` we own; strftime writes at most `buf.len()`
    // bytes into `buf` and returns how many it wrote.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return String::new();
        }
        let mut buf = [0u8; 256];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c_format.as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Python's default `asctime`: `2026-11-28 16:36:19,854`.
pub fn asctime(time: SystemTime) -> String {
    let (secs, micros) = split(time);
    format!(
        "{},{:03}",
        strftime(secs, "%Y-%m-%d %H:%M:%S"),
        micros / 1000
    )
}

/// `datetime.now().isoformat()`: `2026-11-28T16:36:19.854000` (no fraction when it is zero).
pub fn isoformat(time: SystemTime) -> String {
    let (secs, micros) = split(time);
    let base = strftime(secs, "%Y-%m-%dT%H:%M:%S");
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shapes() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_883_779_854_076);
        let a = asctime(t);
        assert_eq!(a.len(), 23, "{a}");
        assert!(a.ends_with(",854"), "{a}");
        let i = isoformat(t);
        assert!(i.ends_with(".854076") && i.as_bytes()[10] == b'T', "{i}");
        assert_eq!(isoformat(UNIX_EPOCH + Duration::from_secs(5)).len(), 19);
    }
}
