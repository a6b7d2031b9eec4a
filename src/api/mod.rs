//! The Kinto HTTP API: routing, utility endpoints and the resource endpoints.
