//! A micro-benchmark of the stack's data path on the host (ignored by default: run it
//! with `cargo test -p xenpv-net --release --test perf -- --ignored --nocapture`): two
//! stacks joined by a wire, a client pushing bytes into the server's discard and echo
//! services, and what it took: time, the server runner's rounds and frames per MiB.
//! A guest pays for every round (netfront's rings, an event channel, an idle hypercall),
//! so fewer rounds per byte is the aim as much as less time.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant as StdInstant;

use embassy_futures::join::join;
use embassy_futures::select::{select, Either};
use embedded_io_async::{Read, Write};
use smoltcp::phy::{Device, DeviceCapabilities};
use smoltcp::time::Instant;
use xenpv_net::loopback::{self, WireEnd};
use xenpv_net::{Config, Driver, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use xenpv_net::{Runner, Stack, TcpListener, TcpStream};

const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const MIB: usize = 64;

/// A wire end that counts the runner's rounds and the frames it receives and sends.
struct Counted {
    end: WireEnd,
    rounds: Rc<Cell<u64>>,
    frames: Rc<Cell<u64>>,
    sent: Rc<Cell<u64>>,
}

/// A frame sent, counted.
struct CountedTx<T> {
    tx: T,
    sent: Rc<Cell<u64>>,
}

impl<T: smoltcp::phy::TxToken> smoltcp::phy::TxToken for CountedTx<T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.sent.set(self.sent.get() + 1);
        self.tx.consume(len, f)
    }
}

impl Device for Counted {
    type RxToken<'a> = <WireEnd as Device>::RxToken<'a>;
    type TxToken<'a> = CountedTx<<WireEnd as Device>::TxToken<'a>>;
    fn receive(&mut self, t: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.end.receive(t)?;
        self.frames.set(self.frames.get() + 1);
        let sent = self.sent.clone();
        Some((rx, CountedTx { tx, sent }))
    }
    fn transmit(&mut self, t: Instant) -> Option<Self::TxToken<'_>> {
        let sent = self.sent.clone();
        Some(CountedTx {
            tx: self.end.transmit(t)?,
            sent,
        })
    }
    fn capabilities(&self) -> DeviceCapabilities {
        self.end.capabilities()
    }
}

impl Driver for Counted {
    fn register_waker(&mut self, waker: &core::task::Waker) {
        self.rounds.set(self.rounds.get() + 1);
        self.end.register_waker(waker)
    }
    fn mac(&self) -> [u8; 6] {
        self.end.mac()
    }
}

/// Push `MIB` MiB to `port` of the server (`echo`: read it back too); print the figures.
fn push(port: u16, echo: bool) {
    let (a_mac, b_mac) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
    let (a_end, b_end) = loopback::wire(a_mac, b_mac);
    let (rounds, frames, sent) = (
        Rc::new(Cell::new(0)),
        Rc::new(Cell::new(0)),
        Rc::new(Cell::new(0)),
    );
    let b_end = Counted {
        end: b_end,
        rounds: rounds.clone(),
        frames: frames.clone(),
        sent: sent.clone(),
    };
    let t0 = StdInstant::now();
    loopback::block_on(async {
        let client = Stack::new(Config::ipv4_static(Ipv4Cidr::new(CLIENT, 24), None), a_mac);
        let server = Stack::new(Config::ipv4_static(Ipv4Cidr::new(SERVER, 24), None), b_mac);
        let mut a = Runner::new(client.clone(), a_end);
        let mut b = Runner::new(server.clone(), b_end);
        let listener = TcpListener::bind(&server, port).unwrap();
        let serve = listener.serve(1, |mut s: TcpStream| async move {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if echo && s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            s.close().await;
        });
        let test = async {
            let mut c = TcpStream::connect(&client, IpEndpoint::new(IpAddress::Ipv4(SERVER), port))
                .await
                .unwrap();
            let (mut rx, mut tx) = c.split();
            let data = vec![0x5au8; 64 * 1024];
            let send = async {
                for _ in 0..MIB * 16 {
                    tx.write_all(&data).await.unwrap();
                }
            };
            let recv = async {
                if echo {
                    let mut got = 0;
                    let mut buf = vec![0u8; 64 * 1024];
                    while got < MIB << 20 {
                        got += rx.read(&mut buf).await.unwrap();
                    }
                }
            };
            join(send, recv).await;
            tx.flush().await.unwrap();
        };
        let runners = join(a.run(), b.run());
        match select(runners, select(serve, test)).await {
            Either::First(_) => panic!("a runner ended"),
            Either::Second(_) => {}
        }
    });
    let s = t0.elapsed().as_secs_f64();
    println!(
        "perf: {} {MIB} MiB: {:.0} MiB/s; the server's runner, per MiB: {:.0} rounds, {:.0} frames in, {:.0} out",
        if echo { "echo" } else { "discard" },
        MIB as f64 / s,
        rounds.get() as f64 / MIB as f64,
        frames.get() as f64 / MIB as f64,
        sent.get() as f64 / MIB as f64
    );
}

#[test]
#[ignore = "a micro-benchmark: run with --release --ignored --nocapture"]
fn discard_throughput() {
    push(9, false);
}

#[test]
#[ignore = "a micro-benchmark: run with --release --ignored --nocapture"]
fn echo_throughput() {
    push(7, true);
}
