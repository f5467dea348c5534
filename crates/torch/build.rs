//! torch-sys sets no rpath: give the tests and examples of this crate one to the libtorch they
//! linked (DEP_TCH_LIBTORCH_LIB comes from the direct torch-sys dependency).
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch");
    }
}
