//! Which metrics a process sends, decided once from the settings.
//!
//! StatsD is on when `statsd_url = udp://host:port` is set. Listed with `kinto.plugins.statsd` in
//! `includes` (Kinto 26), the metrics have Kinto 26's names; set alone (the older standalone setting
//! of the production docs, which Kinto 26 ignores), they have the cliquet names those docs list
//! (`users`, `authn_type.<policy>`, `view.<route>.<METHOD>`, `storage.<method>`, ...), so dashboards
//! built on either keep working. The prefix is `project_name`, or `statsd_prefix` when it is empty.

use std::fmt;

/// The metric names sent over StatsD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Kinto 26 (`request_summary`, `backend.storage.seconds.method.get`, ...), API.md 10.1.
    Kinto,
    /// cliquet / Kinto 1.x (`users`, `authn_type.basicauth`, `view.hello.GET`, `storage.get`, ...).
    Cliquet,
}

/// Where StatsD datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsdTarget {
    pub host: String,
    pub port: u16,
}

/// Validated metrics settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub statsd: Option<StatsdTarget>,
    pub naming: Naming,
    /// Without the trailing dot; may be empty.
    pub prefix: String,
    /// `kinto.plugins.prometheus` in `includes`: keep aggregates for `/__metrics__`.
    pub prometheus: bool,
    /// `metrics_matchdict_fields`: the URL ids used as labels of the request metrics.
    pub matchdict_fields: Vec<String>,
}

/// A metrics setting that cannot work: the worker must not start with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsError(pub String);

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MetricsError {}

const STATSD_PLUGIN: &str = "kinto.plugins.statsd";
const PROMETHEUS_PLUGIN: &str = "kinto.plugins.prometheus";
const DEFAULT_MATCHDICT_FIELDS: &str = "bucket_id collection_id group_id record_id";

impl MetricsConfig {
    /// From the settings struct (`includes`, `statsd_url`, `statsd_prefix`, `project_name`,
    /// `metrics_matchdict_fields`).
    pub fn from_settings(settings: &crate::settings::Settings) -> Result<Self, MetricsError> {
        Self::from_parts(
            &settings.includes,
            settings.statsd_url.as_deref(),
            &settings.project_name,
            &settings.statsd_prefix,
            settings
                .raw
                .get("metrics_matchdict_fields")
                .map(String::as_str),
        )
    }

    /// The rule itself, on plain values.
    pub fn from_parts(
        includes: &[String],
        statsd_url: Option<&str>,
        project_name: &str,
        statsd_prefix: &str,
        matchdict_fields: Option<&str>,
    ) -> Result<Self, MetricsError> {
        let has = |plugin: &str| includes.iter().any(|i| i == plugin);
        let statsd_url = statsd_url.map(str::trim).filter(|u| !u.is_empty());
        let statsd = statsd_url.map(parse_statsd_url).transpose()?;
        if statsd.is_none() && has(STATSD_PLUGIN) {
            return Err(MetricsError(format!(
                "{STATSD_PLUGIN} is included but statsd_url is not set (e.g. udp://localhost:8125)"
            )));
        }
        let naming = if has(STATSD_PLUGIN) {
            Naming::Kinto
        } else {
            Naming::Cliquet
        };
        let prefix = if project_name.is_empty() {
            statsd_prefix
        } else {
            project_name
        };
        let matchdict_fields = matchdict_fields
            .unwrap_or(DEFAULT_MATCHDICT_FIELDS)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Ok(MetricsConfig {
            statsd,
            naming,
            prefix: prefix.trim_end_matches('.').to_owned(),
            prometheus: has(PROMETHEUS_PLUGIN),
            matchdict_fields,
        })
    }
}

/// `udp://host:port` (port 8125 when absent, as StatsD clients default to).
fn parse_statsd_url(url: &str) -> Result<StatsdTarget, MetricsError> {
    let bad = |why: &str| MetricsError(format!("Invalid statsd_url {url:?}: {why}"));
    let rest = url
        .strip_prefix("udp://")
        .ok_or_else(|| bad("expected udp://host:port"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 8125,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("invalid port"))?,
    };
    Ok(StatsdTarget {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn includes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plugin_and_url_give_kinto_names() {
        let c = MetricsConfig::from_parts(
            &includes(&["kinto.plugins.statsd"]),
            Some("udp://127.0.0.1:8125"),
            "kinto",
            "kinto.core",
            None,
        )
        .unwrap();
        assert_eq!(c.naming, Naming::Kinto);
        assert_eq!(
            c.statsd,
            Some(StatsdTarget {
                host: "127.0.0.1".into(),
                port: 8125
            })
        );
        assert_eq!(c.prefix, "kinto");
        assert_eq!(c.matchdict_fields.len(), 4);
        assert!(!c.prometheus);
    }

    #[test]
    fn standalone_url_gives_cliquet_names() {
        let c = MetricsConfig::from_parts(
            &[],
            Some("udp://carbon.server:8125"),
            "",
            "kinto.core",
            None,
        )
        .unwrap();
        assert_eq!(c.naming, Naming::Cliquet);
        assert_eq!(c.statsd.unwrap().host, "carbon.server");
        assert_eq!(
            c.prefix, "kinto.core",
            "statsd_prefix when project_name is empty"
        );
    }

    #[test]
    fn no_url_means_no_statsd() {
        let c = MetricsConfig::from_parts(
            &includes(&["kinto.plugins.prometheus"]),
            Some(""),
            "p",
            "",
            None,
        )
        .unwrap();
        assert_eq!(c.statsd, None);
        assert!(c.prometheus);
    }

    #[test]
    fn bad_urls_are_errors() {
        for url in [
            "http://host:8125",
            "udp://:8125",
            "udp://host:x",
            "udp://host:0",
            "udp://[::1",
        ] {
            assert!(
                MetricsConfig::from_parts(&[], Some(url), "kinto", "", None).is_err(),
                "{url}"
            );
        }
        let err = MetricsConfig::from_parts(
            &includes(&["kinto.plugins.statsd"]),
            None,
            "kinto",
            "",
            None,
        )
        .unwrap_err();
        assert!(err.0.contains("statsd_url"));
    }

    #[test]
    fn url_forms() {
        assert_eq!(parse_statsd_url("udp://h").unwrap().port, 8125);
        let v6 = parse_statsd_url("udp://[::1]:9000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));
    }
}
