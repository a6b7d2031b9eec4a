//! A test binary built from `master` and `worker` with a probe handler (`/pid`, `/sleep?ms=N`,
//! `/exit?code=N`, `/abort`, `/panic`, `/echo`, `/headers`), so that process and HTTP behaviour
//! are tested without Kinto or a database.

fn main() {
    unimplemented!("probe")
}
