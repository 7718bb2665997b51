fn main() {
    std::process::exit(vigil_watchdog::cli::main());
}
