//! The command line: `kinto [--ini PATH] [start|init|migrate|version|...]` and uWSGI-style options.

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    unimplemented!("cli")
}
