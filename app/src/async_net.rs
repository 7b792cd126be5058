//! The async runtime's devices (`async_net` on the command line, a domU with a vif):
//! `rt.devices().net(0)` up with its `ip=` address, a TCP echo (RFC 862, port 7) over
//! xenpv-net, and `xl shutdown` — awaited through `rt.shutdown()`, or ignored
//! (`ignore_shutdown`: the runtime's grace period ends the guest with status 0).

use embedded_io_async::{Read, Write};
use xenpv_contract::status::AppStatus;
use xenpv_rt::exec::embassy_futures::select::{select, Either};
use xenpv_rt::println;
use xenpv_rt::xenpv_net::{TcpListener, TcpStream};

/// Echo what the client sends until it closes (or a read or write fails: the stream's
/// idle timeout, a reset), then close.
async fn echo(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    s.close().await;
}

/// The `async_net` word's application.
pub async fn app(rt: &'static xenpv_rt::Runtime) -> i32 {
    let ignore = rt.cmdline().has("ignore_shutdown");
    let net = match rt.devices().net(0).await {
        Ok(n) => n,
        Err(e) => {
            println!("async-net: vif0: {e}");
            return AppStatus::Device.into();
        }
    };
    net.wait_config_up().await;
    match net.ipv4() {
        Some(a) => println!("async-net: vif0 up ip={a}"),
        None => println!("async-net: vif0 up without an address"),
    }
    let listener = match TcpListener::bind(&net, 7) {
        Ok(l) => l,
        Err(e) => {
            println!("async-net: bind 7: {e:?}");
            return AppStatus::Usage.into();
        }
    };
    let serve = listener.serve(8, echo);
    if ignore {
        println!("async-net: serving, ignoring shutdown");
        serve.await;
        return 0;
    }
    match select(serve, rt.shutdown()).await {
        Either::First(()) => {
            println!("async-net: the listener ended");
            AppStatus::Failed.into()
        }
        Either::Second(why) => {
            println!("async-net: shutdown {}: returning 0", why.as_str());
            0
        }
    }
}
