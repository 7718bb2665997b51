//! `vigil-watchdog`: the binary. Everything is in the `vigil_watchdog` library; its `cli`
//! module parses the command line and runs the command (see the library's `# Layout`).

fn main() {
    std::process::exit(vigil_watchdog::cli::main());
}
