//! `gud-torch`: the command line of `gud` with the network (libtorch) registered; `gud`
//! hands it the commands that need the network.
fn main() -> std::process::ExitCode {
    gud_torch::register();
    gud_cli::main()
}
