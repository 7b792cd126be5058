//! embassy-net over netfront (command-line word `enet`, a domU with one vif and `ip=`):
//! the kept alternative to xenpv-net, kept here so `cargo xtask bench net` can measure
//! the two on the same services — TCP discard on port 9, `GET /bytes/N` on port 80 and
//! UDP echo on port 7, the appliance's own bytes (`xenpv_appliance::http`).
//!
//! What it shows about embassy-net 0.9 (the reasons xenpv-net is built on the runtime's
//! smoltcp 0.14 instead, see docs/unikernel.md):
//! - it brings smoltcp 0.13, a second TCP/IP stack in the image beside the runtime's 0.14;
//! - `embassy-net-driver` has no segmentation offload: a TCP send is one frame per MSS,
//!   where netfront with smoltcp 0.14 hands the backend 64 KiB at once (GSO);
//! - its `RxToken` lends a mutable frame, so netfront's received frame (copied out of
//!   the shared pages already) is copied once more here;
//! - its runner never returns: a vif whose backend goes away cannot be taken back and
//!   closed, so this harness does not detach; the guest just ends.

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::task::Context;
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_net_driver as drv;
use xenpv_appliance::http::{self, Parse};
use xenpv_contract::status::AppStatus;
use xenpv_rt::cmdline::IpWord;
use xenpv_rt::exec::embassy_futures::join::join_array;
use xenpv_rt::exec::embassy_futures::select::{select, select3, Either};
use xenpv_rt::net::netfront::Netfront;
use xenpv_rt::net::smoltcp::phy::{self, Checksum, Device};
use xenpv_rt::{exec, println};

// Each port's socket buffers are the xenpv-net appliance's (a like-for-like run): the
// discard port receives into 1 MiB, HTTP sends from 1 MiB.
use xenpv_appliance_service::config::{SMALL_BUFFER, STREAM_BUFFER};
/// Connections each TCP service serves at once.
const WORKERS: usize = 4;
/// The largest frame netfront may hand over (a multi-slot receive with GSO).
const RX_MAX: usize = 65_536;

/// netfront as an `embassy-net-driver` device: smoltcp 0.14's tokens, wrapped.
struct Vif {
    nf: Netfront,
    rx: Vec<u8>,
}

struct Rx<'a>(&'a mut [u8]);
impl drv::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

struct Tx<'a>(<Netfront as Device>::TxToken<'a>);
impl drv::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        phy::TxToken::consume(self.0, len, f)
    }
}

fn now() -> xenpv_rt::net::smoltcp::time::Instant {
    xenpv_rt::net::phy::now()
}

impl drv::Driver for Vif {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(Rx<'_>, Tx<'_>)> {
        self.nf.poll();
        let port = self.nf.port();
        let Some((rx, tx)) = self.nf.receive(now()) else {
            exec::wake_on(port, cx.waker());
            return None;
        };
        // embassy-net lends the frame mutably: one more copy than smoltcp's own API.
        let buf = &mut self.rx;
        let n = phy::RxToken::consume(rx, |f| {
            let n = f.len().min(buf.len());
            buf[..n].copy_from_slice(&f[..n]);
            n
        });
        Some((Rx(&mut buf[..n]), Tx(tx)))
    }

    fn transmit(&mut self, cx: &mut Context<'_>) -> Option<Tx<'_>> {
        if self.nf.tx_full() {
            exec::wake_on(self.nf.port(), cx.waker());
            return None;
        }
        self.nf.transmit(now()).map(Tx)
    }

    fn link_state(&mut self, _cx: &mut Context<'_>) -> drv::LinkState {
        if self.nf.broken().is_none() {
            drv::LinkState::Up
        } else {
            drv::LinkState::Down
        }
    }

    fn capabilities(&self) -> drv::Capabilities {
        let c = self.nf.capabilities();
        let mut caps = drv::Capabilities::default();
        caps.max_transmission_unit = c.max_transmission_unit;
        caps.max_burst_size = c.max_burst_size;
        let map = |x: Checksum| match x {
            Checksum::Both => drv::Checksum::Both,
            Checksum::Rx => drv::Checksum::Rx,
            Checksum::Tx => drv::Checksum::Tx,
            Checksum::None => drv::Checksum::None,
        };
        caps.checksum.ipv4 = map(c.checksum.ipv4);
        caps.checksum.udp = map(c.checksum.udp);
        caps.checksum.tcp = map(c.checksum.tcp);
        caps.checksum.icmpv4 = map(c.checksum.icmpv4);
        caps
    }

    fn hardware_address(&self) -> drv::HardwareAddress {
        drv::HardwareAddress::Ethernet(self.nf.mac())
    }
}

/// The `enet` word's application: vif0 with its static `ip=` address.
pub async fn app(rt: &'static xenpv_rt::Runtime) -> i32 {
    let Ok(Some(IpWord::Static { addr, prefix })) = rt.cmdline().ip(0) else {
        println!("enet: needs ip=A.B.C.D/P (a static address for vif0)");
        return AppStatus::Usage.into();
    };
    // A blocking handshake (this harness serves nothing before it is up).
    let connected = rt.devices().with(|c| {
        Netfront::connect(c.memory, c.grants, c.xenstore, 0).map_err(|e| alloc::format!("{e}"))
    });
    let nf = match connected {
        Ok(Ok(nf)) => nf,
        Ok(Err(e)) => {
            println!("enet: vif0: {e}");
            return AppStatus::Device.into();
        }
        Err(e) => {
            println!("enet: vif0: {e}");
            return AppStatus::Device.into();
        }
    };
    let [a, b, c, d] = addr;
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(a, b, c, d), prefix),
        gateway: None,
        dns_servers: Default::default(),
    });
    let resources = Box::leak(Box::new(StackResources::<{ 2 * WORKERS + 2 }>::new()));
    let vif = Vif {
        nf,
        rx: vec![0; RX_MAX],
    };
    let (stack, mut runner) = embassy_net::new(vif, config, resources, xenpv_rt::time::now_ns());
    println!("enet: vif0 up ip={a}.{b}.{c}.{d}/{prefix}: serving udp/7 tcp/9 tcp/80 (embassy-net)");
    let discard = join_array::<_, WORKERS>(core::array::from_fn(|_| discard(stack)));
    let http = join_array::<_, WORKERS>(core::array::from_fn(|_| serve_http(stack)));
    let services = select3(discard, http, udp_echo(stack));
    let why = select(select(runner.run(), services), rt.shutdown()).await;
    match why {
        Either::Second(w) => {
            println!("enet: shutdown {}: returning 0", w.as_str());
            0
        }
        Either::First(_) => {
            println!("enet: a service ended");
            AppStatus::Failed.into()
        }
    }
}

/// TCP discard (RFC 863), one connection at a time per worker.
async fn discard(stack: embassy_net::Stack<'static>) {
    let (mut rx, mut tx) = (vec![0u8; STREAM_BUFFER], vec![0u8; SMALL_BUFFER]);
    loop {
        let mut s = TcpSocket::new(stack, &mut rx, &mut tx);
        if s.accept(9).await.is_err() {
            continue;
        }
        // Drop what arrives straight out of the socket's buffer.
        while let Ok(n @ 1..) = s.read_with(|b| (b.len(), b.len())).await {
            let _ = n;
        }
        s.close();
        let _ = s.flush().await;
    }
}

/// `GET /bytes/N` and the appliance's other routes, one request per connection.
async fn serve_http(stack: embassy_net::Stack<'static>) {
    let (mut rx, mut tx) = (vec![0u8; SMALL_BUFFER], vec![0u8; STREAM_BUFFER]);
    loop {
        let mut s = TcpSocket::new(stack, &mut rx, &mut tx);
        if s.accept(80).await.is_err() {
            continue;
        }
        let mut head = Vec::new();
        let route = loop {
            let mut buf = [0u8; 512];
            match s.read(&mut buf).await {
                Ok(n @ 1..) if head.len() + n <= http::HEAD_MAX => {
                    head.extend_from_slice(&buf[..n]);
                }
                _ => break None,
            }
            match http::parse(&head) {
                Parse::Incomplete => continue,
                Parse::Done { route, .. } => break Some(route),
            }
        };
        if let Some(route) = route {
            let r = http::respond(route);
            let h = http::head(&r, r.body.checksum());
            if write_all(&mut s, h.as_bytes()).await {
                // The body is written straight into the socket's buffer.
                let mut at = 0u64;
                while at < r.body.len() {
                    match s
                        .write_with(|b| {
                            let n = r.body.fill(at, b);
                            (n, n)
                        })
                        .await
                    {
                        Ok(n @ 1..) => at += n as u64,
                        _ => break,
                    }
                }
            }
        }
        s.close();
        let _ = s.flush().await;
    }
}

/// UDP echo (RFC 862).
async fn udp_echo(stack: embassy_net::Stack<'static>) {
    let mut rx_meta = [PacketMetadata::EMPTY; 64];
    let mut tx_meta = [PacketMetadata::EMPTY; 64];
    let (mut rx, mut tx) = (vec![0u8; 256 * 1024], vec![0u8; 256 * 1024]);
    let mut s = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    if s.bind(7).is_err() {
        println!("enet: bind udp/7 failed");
        return;
    }
    let mut buf = vec![0u8; 65_536];
    loop {
        if let Ok((n, meta)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], meta).await;
        }
    }
}

/// Write all of `b`; false if the connection failed first.
async fn write_all(s: &mut TcpSocket<'_>, mut b: &[u8]) -> bool {
    while !b.is_empty() {
        match s.write(b).await {
            Ok(n @ 1..) => b = &b[n..],
            _ => return false,
        }
    }
    true
}
