//! kinto-rs: a Kinto-compatible JSON storage and sync service.
//!
//! The binary glues three parts: `master` (process management from the `[uwsgi]` section),
//! `worker` (HTTP/1.1 serving) and this crate, the Kinto application: settings, the HTTP API,
//! the storage/permission/cache backends, metrics, logging and the command line.

pub mod accounts;
pub mod api;
pub mod app;
pub mod auth;
pub mod authz;
pub mod cache;
pub mod cli;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod permission;
pub mod settings;
pub mod storage;
