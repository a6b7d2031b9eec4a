//! The metrics the application reports, before any naming scheme is applied, and the label
//! rules Kinto uses to turn label values into StatsD name segments.

use std::time::Duration;

use super::{Backend, RequestMetrics};

/// One observation, named per scheme by the sinks (`statsd`, `prometheus`).
pub(crate) enum Metric<'a> {
    /// A timer named by the caller.
    Timer(&'a str, Duration),
    /// A counter named by the caller.
    Counter(&'a str, u64),
    BackendCall(Backend, &'a str, Duration),
    /// `(policy, step, duration)`.
    AuthenticationStep(&'a str, &'a str, Duration),
    Permits(Duration),
    CacheLookup(bool),
    Request {
        request: &'a RequestMetrics<'a>,
        /// `metrics_matchdict_fields` with their values (empty for error statuses).
        labels: &'a [(&'a str, &'a str)],
    },
}

/// Appends `name.value` pairs joined by `.` to `out` (Kinto's label flattening). Kinto removes
/// `:` from values; `|`, `\n` and `@` are removed too since they would corrupt the datagram.
pub(crate) fn push_labels(out: &mut String, labels: &[(&str, &str)]) {
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(name);
        out.push('.');
        out.extend(
            value
                .chars()
                .filter(|c| !matches!(c, ':' | '|' | '\n' | '@')),
        );
    }
}

/// The user id as a StatsD set value: Kinto turns the `:` of ids into `.` here.
pub(crate) fn user_segment(userid: &str) -> String {
    userid
        .chars()
        .filter(|c| !matches!(c, '|' | '\n' | '@'))
        .map(|c| if c == ':' { '.' } else { c })
        .collect()
}

/// The route name cliquet used for a Kinto 26 route name: resources were `<resource>-collection`
/// and `<resource>-record` before Kinto 14 renamed them `-plural` and `-object`.
pub(crate) fn cliquet_endpoint(endpoint: &str) -> String {
    if let Some(resource) = endpoint.strip_suffix("-plural") {
        format!("{resource}-collection")
    } else if let Some(resource) = endpoint.strip_suffix("-object") {
        format!("{resource}-record")
    } else {
        endpoint.to_owned()
    }
}

/// The backend method name cliquet timed for a Kinto 26 one: the production docs list
/// `storage.collection_timestamp`, `storage.get_all`, `permission.user_principals` and
/// `permission.object_permission_principals`, renamed since.
pub(crate) fn cliquet_method(method: &str) -> &str {
    match method {
        "resource_timestamp" => "collection_timestamp",
        "list_all" => "get_all",
        "get_user_principals" => "user_principals",
        "get_object_permission_principals" => "object_permission_principals",
        other => other,
    }
}

/// Milliseconds with six decimals, as the Python StatsD client writes timers.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_flatten_like_kinto() {
        let mut s = String::new();
        push_labels(
            &mut s,
            &[("method", "get"), ("bucket_id", ""), ("record_id", "a:b|c")],
        );
        assert_eq!(s, "method.get.bucket_id..record_id.abc");
    }

    #[test]
    fn user_and_endpoints() {
        assert_eq!(user_segment("google:123"), "google.123");
        assert_eq!(cliquet_endpoint("record-plural"), "record-collection");
        assert_eq!(cliquet_endpoint("bucket-object"), "bucket-record");
        assert_eq!(cliquet_endpoint("hello"), "hello");
        assert_eq!(cliquet_method("list_all"), "get_all");
        assert_eq!(cliquet_method("get"), "get");
    }
}
