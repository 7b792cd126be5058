// The runtime exports the link arguments of a PV kernel (its linker script included):
// pass them on to the kernel binary. Without this the link pulls in the C start files
// and fails with `duplicate symbol: _start`.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_XENPV_RT_LINK_ARGS");
    let args = std::env::var("DEP_XENPV_RT_LINK_ARGS")
        .expect("xenpv-rt exports DEP_XENPV_RT_LINK_ARGS (is it a dependency?)");
    for arg in args.split_whitespace() {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
