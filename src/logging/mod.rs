//! Logging (placeholder while the metrics module builds).
