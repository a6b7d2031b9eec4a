//! Kinto settings from `[app:main]`: one registry of names, defaults and docs, parsed once into a
//! typed struct, with `kinto.`/`cliquet.` prefixes and `KINTO_*` environment overrides.
