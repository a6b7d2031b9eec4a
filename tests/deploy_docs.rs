//! The generated documentation pages stay equal to their source: `docs/uwsgi-options.md` is the
//! master's option registry (`master::docs_markdown`). Regenerate with
//! `KINTO_UPDATE_DOCS=1 cargo test --test deploy_docs`.

use std::path::Path;

fn uwsgi_options_page() -> String {
    format!(
        "# `[uwsgi]` options\n\n\
         Generated from the option registry in `master/src/registry.rs` (a test checks that this file\n\
         matches it: `KINTO_UPDATE_DOCS=1 cargo test --test deploy_docs` regenerates it).\n\n\
         Every option kinto-rs knows, in uWSGI's own dialect (`--name value` on the command line,\n\
         `name = value` in the `[uwsgi]` section). *Behaviour*: **honoured** options act as in uWSGI\n\
         (see `docs/compatibility.md` for the deliberate differences); **accepted, no effect** options\n\
         start the server with a one-line notice naming the reason; **rejected** options stop startup\n\
         with exit 2 and the reason. An option not in this table is kept as a placeholder with a\n\
         notice, as uWSGI does (with `strict = true` it stops startup). Kinds and the reading of\n\
         values follow uWSGI: see SERVER.md 1.2. *Priority* is that of the contract (must / should /\n\
         won't).\n\n{}",
        master::docs_markdown()
    )
}

#[test]
fn uwsgi_options_page_matches_the_registry() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/uwsgi-options.md");
    let generated = uwsgi_options_page();
    if std::env::var_os("KINTO_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/uwsgi-options.md is out of date: run `KINTO_UPDATE_DOCS=1 cargo test --test deploy_docs`"
    );
}

/// Every page the deployment docs link to exists, and every relative link in them resolves.
#[test]
fn deployment_pages_link_to_existing_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for page in [
        "docs/quickstart.md",
        "docs/deployment.md",
        "docs/migrating.md",
        "docs/compatibility.md",
        "docs/signals.md",
        "docs/monitoring.md",
    ] {
        let text =
            std::fs::read_to_string(root.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        let dir = root.join(page).parent().unwrap().to_path_buf();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split('#').next().unwrap();
            if !target.is_empty() && !target.contains("://") {
                assert!(
                    dir.join(target).exists(),
                    "{page} links to {target}, which does not exist"
                );
            }
            rest = &after[end..];
        }
    }
}
