//! Dropping privileges after binding (SERVER.md 3.1 step 10): `setgid`, `initgroups` (or an empty
//! group list), `setuid`, then a check that root cannot be regained.

use crate::config::ServerConfig;
use nix::unistd::{Gid, Uid};

/// Drops to the configured `uid`/`gid`; returns the lines to log.
pub fn drop_privileges(config: &ServerConfig) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    if !root {
        if let Some(gid) = config.gid {
            if gid != nix::unistd::getgid().as_raw() || gid != nix::unistd::getegid().as_raw() {
                return Err("cannot setgid() as non-root user".to_string());
            }
        }
        if let Some((uid, _)) = &config.uid {
            if *uid != nix::unistd::getuid().as_raw() || *uid != nix::unistd::geteuid().as_raw() {
                return Err("cannot setuid() as non-root user".to_string());
            }
        }
        return Ok(lines);
    }
    if config.uid.is_none() && config.gid.is_none() {
        lines.push("uWSGI running as root, you can use --uid/--gid/--chroot options".to_string());
        lines.push(
            "*** WARNING: you are running uWSGI as root !!! (use the --uid flag) ***".to_string(),
        );
        return Ok(lines);
    }
    if let Some(gid) = config.gid {
        nix::unistd::setgid(Gid::from_raw(gid)).map_err(|e| format!("setgid(): {e}"))?;
        lines.push(format!("setgid() to {gid}"));
    }
    let group = Gid::from_raw(config.gid.unwrap_or_else(|| nix::unistd::getgid().as_raw()));
    match &config.uid {
        Some((_, Some(name))) if !config.no_initgroups => {
            let cname = std::ffi::CString::new(name.as_str()).map_err(|e| e.to_string())?;
            nix::unistd::initgroups(&cname, group).map_err(|e| format!("initgroups(): {e}"))?;
        }
        _ if !config.no_initgroups => {
            // No user name to take groups from: keep none of root's supplementary groups.
            let groups: Vec<Gid> = if config.gid.is_some() {
                vec![group]
            } else {
                Vec::new()
            };
            nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups(): {e}"))?;
        }
        _ => {}
    }
    if !config.add_gids.is_empty() {
        let mut groups = nix::unistd::getgroups().map_err(|e| format!("getgroups(): {e}"))?;
        groups.extend(config.add_gids.iter().map(|g| Gid::from_raw(*g)));
        nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups(): {e}"))?;
        for gid in &config.add_gids {
            lines.push(format!("adding {gid} to supplementary groups"));
        }
    }
    if let Some((uid, _)) = &config.uid {
        nix::unistd::setuid(Uid::from_raw(*uid)).map_err(|e| format!("setuid(): {e}"))?;
        lines.push(format!("setuid() to {uid}"));
        if *uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err("the process is still able to regain root privileges: abort".to_string());
        }
    }
    Ok(lines)
}
