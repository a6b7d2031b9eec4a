//! Process titles (`procname*`, `auto-procname`): what `ps` shows for the master and each worker.
//!
//! The title is written over the process's own argument area (the memory `/proc/<pid>/cmdline`
//! shows, bounded by `arg_start`/`arg_end` of `/proc/self/stat`), and the 15-byte `comm` is set
//! with `PR_SET_NAME`. The original arguments are captured before, for a re-exec.

use crate::ServerConfig;

/// The master's title, if the configuration asks for one.
pub fn master_title(config: &ServerConfig) -> Option<String> {
    let base = config
        .procname_master
        .clone()
        .or_else(|| config.auto_procname.then(|| "uWSGI master".to_string()))
        .or_else(|| config.procname.clone())?;
    Some(decorate(config, &base))
}

/// The title of the worker of slot `id`, if the configuration asks for one.
pub fn worker_title(config: &ServerConfig, id: usize) -> Option<String> {
    let base = config
        .procname
        .clone()
        .or_else(|| config.auto_procname.then(|| format!("uWSGI worker {id}")))?;
    Some(decorate(config, &base))
}

fn decorate(config: &ServerConfig, base: &str) -> String {
    format!(
        "{}{base}{}",
        config.procname_prefix.as_deref().unwrap_or(""),
        config.procname_append.as_deref().unwrap_or("")
    )
}

/// Sets the title of the calling process (truncated to the original argument area).
pub fn set_title(title: &str) {
    if let Ok(comm) = std::ffi::CString::new(title.bytes().take(15).collect::<Vec<u8>>()) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
    }
    let Some((start, end)) = argument_area() else {
        return;
    };
    let len = end.saturating_sub(start);
    if len < 2 {
        return;
    }
    let bytes = &title.as_bytes()[..title.len().min(len - 1)];
    // SAFETY: [start, end) is this process's argument area (on its own stack, writable); the
    // title is copied in and the rest zeroed, staying within the area.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
        area[..bytes.len()].copy_from_slice(bytes);
        area[bytes.len()..].fill(0);
    }
}

/// `arg_start` and `arg_end` (fields 48 and 49 of `/proc/self/stat`).
fn argument_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    Some((fields.get(45)?.parse().ok()?, fields.get(46)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        let config = ServerConfig {
            auto_procname: true,
            procname_prefix: Some("kinto ".into()),
            ..ServerConfig::default()
        };
        assert_eq!(master_title(&config).unwrap(), "kinto uWSGI master");
        assert_eq!(worker_title(&config, 2).unwrap(), "kinto uWSGI worker 2");
        assert!(master_title(&ServerConfig::default()).is_none());
        let (start, end) = argument_area().unwrap();
        assert!(end > start);
    }
}
