//! `gud`: the command line without libtorch; what needs the network runs in `gud-torch`.
fn main() -> std::process::ExitCode {
    gud_cli::main()
}
