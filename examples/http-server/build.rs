//! Build script: xenpv-rt exports the link arguments of a PV kernel (its linker
//! script included).
fn main() {
    let args =
        std::env::var("DEP_XENPV_RT_LINK_ARGS").expect("xenpv-rt exports DEP_XENPV_RT_LINK_ARGS");
    for arg in args.split_whitespace() {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
