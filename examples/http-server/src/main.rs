//! The HTTP example as a PV guest: vif 0 through the runtime's device layer, then
//! picoserve on port 80 (the routes and the glue are the `http-server-service` crate,
//! `service/`, host-tested) until the toolstack asks the domain to shut down. Boot it as
//! a domU with `--net`, and `ip=ADDR/PREFIX` on its command line (DHCP without it):
//!
//! ```text
//! cargo build --release -p http-server-example
//! xenpv-run --domu --net 1 target/release/http-server-example ip=169.254.100.2/24
//! ```
#![no_std]
#![no_main]

use embassy_futures::select::{select, Either};
use http_server_service::{router, serve, PORT};
use xenpv_net::TcpListener;
use xenpv_rt::println;

xenpv_rt::main!(app);

async fn app(rt: &'static xenpv_rt::Runtime) -> i32 {
    let net = match rt.devices().net(0).await {
        Ok(net) => net,
        Err(e) => {
            println!("http-server: vif 0: {e}");
            return 1;
        }
    };
    net.wait_config_up().await;
    let listener = match TcpListener::bind(&net, PORT) {
        Ok(l) => l,
        Err(e) => {
            println!("http-server: bind port {PORT}: {e:?}");
            return 1;
        }
    };
    if let Some(ip) = net.ipv4() {
        println!("http-server: serving http://{}:{PORT}/", ip.address());
    }
    let app = router();
    match select(serve(&listener, &app), rt.shutdown()).await {
        Either::First(()) => 1,
        Either::Second(how) => {
            println!("http-server: shutdown requested ({})", how.as_str());
            0
        }
    }
}
