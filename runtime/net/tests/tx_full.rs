//! A device whose transmit slots are all in flight: the runner waits for it (or
//! `TX_FULL_WAIT`), it does not poll the stack again and again.

use std::cell::Cell;
use std::rc::Rc;

use embassy_futures::select::select;
use embassy_time::{Duration, Timer};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use xenpv_net::{loopback, Config, Driver, Ipv4Address, Ipv4Cidr, Runner, Stack, TcpStream};

/// Takes nothing in, sends nothing out, and says so; counts the runner's rounds.
struct Full {
    rounds: Rc<Cell<u32>>,
}

struct NoToken;

impl phy::RxToken for NoToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&[])
    }
}

impl phy::TxToken for NoToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        f(&mut vec![0; len])
    }
}

impl phy::Device for Full {
    type RxToken<'a> = NoToken;
    type TxToken<'a> = NoToken;
    fn receive(&mut self, _: Instant) -> Option<(NoToken, NoToken)> {
        None
    }
    fn transmit(&mut self, _: Instant) -> Option<NoToken> {
        None
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

impl Driver for Full {
    fn register_waker(&mut self, _: &core::task::Waker) {
        self.rounds.set(self.rounds.get() + 1);
    }
    fn mac(&self) -> [u8; 6] {
        [2, 0, 0, 0, 0, 1]
    }
    fn tx_full(&mut self) -> bool {
        true
    }
}

#[test]
fn a_runner_waits_for_a_full_device_instead_of_spinning() {
    let rounds = Rc::new(Cell::new(0));
    let cidr = Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 1), 24);
    let stack = Stack::new(Config::ipv4_static(cidr, None), [2, 0, 0, 0, 0, 1]);
    let mut runner = Runner::new(
        stack.clone(),
        Full {
            rounds: rounds.clone(),
        },
    );
    let window = Duration::from_millis(400);
    loopback::block_on(async {
        // A connection wants its SYN (its ARP request first) out: smoltcp says "now".
        let connect = TcpStream::connect(&stack, (Ipv4Address::new(10, 0, 0, 2), 7).into());
        let _ = select(select(runner.run(), connect), Timer::after(window)).await;
    });
    // At most one round per TX_FULL_WAIT (20 ms) and the socket's own timers, not a spin.
    let n = rounds.get();
    assert!(n <= 60, "{n} rounds in {window:?} against a full device");
    assert!(n >= 2, "{n} rounds: the runner never re-polled");
}
