//! A network appliance on xenpv-rt: TCP echo on port 7 and `GET /hello` on port 80, for
//! many clients at once, until dom0 asks it to stop (`xl shutdown`). Boot and check it
//! with `cargo run -- --domu --net --dom0-script dom0-check.sh ip=169.254.100.2/24`.
#![no_std]
#![no_main]

use embassy_futures::select::{select, Either};
use xenpv_rt::{println, Runtime};

xenpv_rt::main!(app);

/// Connections served at once per service; more wait in the listener's backlog.
const WORKERS: usize = 32;

async fn app(rt: &'static Runtime) -> i32 {
    // The first vif, connected, with its address from `ip=` (or DHCP with `ip=dhcp`).
    let net = match rt.devices().net(0).await {
        Ok(net) => net,
        Err(e) => {
            println!("@NAME@: vif 0: {e}");
            return 1;
        }
    };
    net.wait_config_up().await;
    if let Some(ip) = net.ipv4().map(|cidr| cidr.address()) {
        println!("@NAME@: echo on {ip}:7, GET /hello on {ip}:80");
    }
    // Serve until dom0 asks the domain to stop; the runtime then closes the vif.
    match select(@CRATE@::serve(&net, WORKERS), rt.shutdown()).await {
        Either::First(end) => {
            println!("@NAME@: the services stopped: {end:?}");
            1
        }
        Either::Second(request) => {
            println!("@NAME@: {request:?}: stopping");
            0
        }
    }
}
