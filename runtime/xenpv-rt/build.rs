//! Ships the linker script the way cortex-m-rt ships `link.x`: it is copied into OUT_DIR
//! and its absolute path, with the rest of the link arguments a PV kernel needs, is handed
//! to the application's build script as `DEP_XENPV_RT_LINK_ARGS` (this crate sets
//! `links = "xenpv-rt"`). The application turns them into `cargo:rustc-link-arg-bins`.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = out.join("xenpv-rt.ld");
    fs::copy("xenpv-rt.ld", &script).expect("copy xenpv-rt.ld into OUT_DIR");
    println!("cargo:rerun-if-changed=xenpv-rt.ld");
    println!("cargo:rustc-link-search={}", out.display());
    // Static, not PIE, no C start files or libraries: Xen jumps straight to _start.
    // defmt's own script (found on the search path its build script adds) lays out the
    // non-allocated .defmt section the host decoder reads.
    let defmt = if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        " -Tdefmt.x"
    } else {
        ""
    };
    println!(
        "cargo:link_args=-nostartfiles -nostdlib -static -no-pie -Wl,--build-id=none \
         -Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack -T{}{defmt}",
        script.display()
    );
}
