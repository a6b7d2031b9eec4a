//! Secrets kept out of log lines.

/// A URL with its password replaced by `***`, for startup lines (`postgresql://u:***@h/db`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls() {
        assert_eq!(
            redact_url("postgresql://postgres:pw@localhost:5432/db"),
            "postgresql://postgres:***@localhost:5432/db"
        );
        assert_eq!(redact_url("sqlite:///kinto.db"), "sqlite:///kinto.db");
        assert_eq!(redact_url("udp://h:8125"), "udp://h:8125");
    }
}
