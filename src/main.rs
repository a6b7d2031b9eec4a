fn main() {
    std::process::exit(kinto::cli::main());
}
