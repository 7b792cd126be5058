//! `xenbox-peer`: the dom0 side of the guest tests in the Xen-in-a-box (see the library,
//! [`xenbox_peer::main_with`], which `xenpv-run` also carries as the box's `$PEER`).
#![forbid(unsafe_code)]

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(xenbox_peer::main_with(&argv))
}
