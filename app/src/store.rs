//! xenstore from the guest: its own domid and name, and a status key the host side can
//! check (`xenstore-read /local/domain/<id>/data/xenpv-app/status`).

use xenpv_contract::report;
use xenpv_rt::{println, Boot};

pub fn run(boot: &mut Boot) -> bool {
    let Some(xs) = boot.xenstore() else {
        println!("xenstore: none (dom0 starts before xenstored; the client is host-tested)");
        return true;
    };
    let text = |r: Result<xenpv_rt::xenstore::Payload, _>| match r {
        Ok(v) => core::str::from_utf8(&v)
            .map(heapless::String::<64>::try_from)
            .ok()
            .and_then(Result::ok),
        Err(e) => {
            println!("xenstore: {e}");
            None
        }
    };
    let domid = text(xs.read("domid"));
    let name = text(xs.read("name"));
    let wrote = xs.write("data/xenpv-app/status", b"ok");
    println!(
        "{}",
        report!(
            "xenstore",
            domid = domid.as_deref().unwrap_or("?"),
            name = name.as_deref().unwrap_or("?"),
            status_write = match &wrote {
                Ok(()) => "ok",
                Err(_) => "FAILED",
            },
        )
    );
    domid.is_some() && name.is_some() && wrote.is_ok()
}
