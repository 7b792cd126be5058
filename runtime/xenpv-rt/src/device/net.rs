//! Network devices (features `async` and `net`): a vif connected without blocking the
//! executor, netfront as a xenpv-net [`Driver`], a [`Stack`] with the vif's address from
//! `ip=`, and a task per vif that runs the stack, notices a backend that goes away
//! (`xl network-detach`), closes the vif, and re-attaches when a backend returns.

use super::{DeviceError, Devices};
use crate::exec;
use crate::net::netfront::{CloseStep, ClosingNetfront, ConnectStep, Netfront};
use crate::xenbus::{self, Backend, Device, State};
use core::fmt::Write as _;
use embassy_futures::select::{select, Either};
use embassy_time::{Duration, Instant, Timer};
use xenpv_net::{Addressing, Config, Driver, Ipv4Address, Ipv4Cidr, Runner, Stack, TcpConfig};

/// How often a vif's task looks at its backend's state besides on xenstore events.
pub const BACKEND_CHECK_NS: u64 = 1_000_000_000;
/// How often a detached vif tries to connect again.
pub const REATTACH_EVERY_NS: u64 = 1_000_000_000;
/// The most vifs the runtime runs at once (tasks in its pool).
pub const MAX_VIFS: usize = 8;

/// A connected vif's network stack (derefs to the [`Stack`]: bind listeners and
/// sockets on it). The runtime's task for the vif keeps it running, through detaches
/// and re-attaches, until the guest ends.
pub struct Net {
    stack: Stack,
    index: u32,
    mac: [u8; 6],
}

impl Net {
    /// The stack.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }
    /// The vif's number (`device/vif/<index>`).
    pub fn index(&self) -> u32 {
        self.index
    }
    /// Its Ethernet address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
}

impl core::ops::Deref for Net {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

/// netfront drives a xenpv-net stack: its event channel wakes the stack's runner, and
/// its link is down once a ring is broken (the vif's task closes it then).
impl Driver for Netfront {
    fn register_waker(&mut self, waker: &core::task::Waker) {
        // Reap TX responses and repost RX buffers after every round of the stack.
        self.poll();
        exec::wake_on(self.port(), waker);
    }
    fn mac(&self) -> [u8; 6] {
        Netfront::mac(self)
    }
    fn link_up(&self) -> bool {
        self.broken().is_none()
    }
    fn tx_full(&mut self) -> bool {
        Netfront::tx_full(self)
    }
}

/// Vif `index`'s addressing from `ip=` (DHCP if it has no entry).
fn addressing(cmdline: crate::Cmdline<'_>, index: u32) -> Result<Addressing, DeviceError> {
    use crate::cmdline::IpWord;
    match cmdline.ip(index as usize) {
        Ok(None) | Ok(Some(IpWord::Dhcp)) => Ok(Addressing::Dhcp),
        Ok(Some(IpWord::Static { addr, prefix })) => Ok(Addressing::Static {
            cidr: Ipv4Cidr::new(Ipv4Address::from_octets(addr), prefix),
            gateway: None,
        }),
        Err(e) => Err(DeviceError::Config(alloc::format!("{e}"))),
    }
}

impl Devices {
    /// Connect vif `index` (`device/vif/<index>`, the `index`-th `--net` of xenpv-run or
    /// `vif=` entry of xl), give it a network stack with its `ip=` entry (`dhcp` or
    /// `A.B.C.D/PREFIX`; DHCP if none), and keep it running in a task of the runtime's.
    ///
    /// The handshake waits for the backend without blocking other tasks, at most 60 s.
    /// Later, a backend that goes away (`xl network-detach`) closes the vif, and a
    /// backend that returns is connected to the same stack: sockets see the link come
    /// and go, the stack stays.
    ///
    /// ```no_run
    /// # async fn f(rt: &'static xenpv_rt::Runtime) -> Result<(), xenpv_rt::device::DeviceError> {
    /// let net = rt.devices().net(0).await?;
    /// net.wait_config_up().await; // a DHCP lease, or the static address
    /// xenpv_rt::println!("vif0 at {:?}", net.ipv4());
    /// # Ok(()) }
    /// ```
    pub async fn net(&'static self, index: u32) -> Result<Net, DeviceError> {
        self.net_with(index, TcpConfig::default()).await
    }

    /// [`Self::net`] with the stack's TCP settings (buffers, backlog, timeouts) chosen.
    pub async fn net_with(&'static self, index: u32, tcp: TcpConfig) -> Result<Net, DeviceError> {
        if self.is_closing() {
            return Err(DeviceError::Closing);
        }
        if self.vifs.borrow().contains(&index) {
            return Err(DeviceError::InUse);
        }
        let addressing = addressing(self.boot.borrow().cmdline(), index)?;
        let nf = self.connect(index).await?;
        let mac = nf.mac();
        let stack = Stack::new(Config { addressing, tcp }, mac);
        let token = match vif_task(self, index, stack.clone(), nf) {
            Ok(t) => t,
            Err(_) => return Err(DeviceError::TooMany),
        };
        self.vifs.borrow_mut().push(index);
        self.open.set(self.open.get() + 1);
        self.spawner.spawn(token);
        crate::println!(
            "xenpv-rt: vif{index} connected mac={} ip={}",
            MacFmt(mac),
            AddrFmt(addressing)
        );
        Ok(Net { stack, index, mac })
    }

    /// Bring vif `index` up, a step at a time: between steps, wait for a xenstore event
    /// or the step's time (the handshake's own deadline bounds the whole).
    async fn connect(&self, index: u32) -> Result<Netfront, DeviceError> {
        let mut p = self.with(|c| {
            Netfront::begin_connect(c.memory, c.grants, c.xenstore, index)
                .map_err(|e| DeviceError::Frontend(alloc::format!("{e}")))
        })??;
        loop {
            match self.with(move |c| p.step(c.xenstore))? {
                ConnectStep::Pending(next, wake_at) => {
                    p = next;
                    self.wait_store(wake_at).await;
                }
                ConnectStep::Connected(nf) => return Ok(nf),
                ConnectStep::Failed(e, closing) => {
                    self.close(closing).await;
                    return Err(DeviceError::Frontend(alloc::format!("{e}")));
                }
            }
        }
    }

    /// Close a vif a step at a time (the close's own deadline bounds the whole); the
    /// pages a backend still holds stay granted (the grant table's deferred list).
    async fn close(&self, mut c: ClosingNetfront) -> u32 {
        loop {
            match self.with(move |x| c.step(x.memory, x.grants, x.xenstore)) {
                Ok(CloseStep::Pending(next, wake_at)) => {
                    c = next;
                    self.wait_store(wake_at).await;
                }
                Ok(CloseStep::Closed(closed)) => return closed.pages_kept as u32,
                Err(e) => {
                    crate::warn!("xenpv-rt: closing a vif: {e}");
                    return 0;
                }
            }
        }
    }

    /// Wait for a xenstore event, Xen system time `until_ns`, or the devices' close.
    async fn wait_store(&self, until_ns: u64) {
        if self.is_closing() {
            return;
        }
        let timer = Timer::at(Instant::from_micros(until_ns / 1000));
        select(select(exec::event(self.store_port), timer), self.closing()).await;
    }

    /// Why the vif's backend is no longer serving it (`Some(state)`: closing or closed;
    /// `None`: its directory vanished), or the devices' close (`Err`).
    async fn backend_gone(&self, dev: &Device, backend: &Backend) -> Result<Option<State>, ()> {
        loop {
            if self.is_closing() {
                return Err(());
            }
            let state = self.with(|c| xenbus::backend_state(c.xenstore, dev, backend).ok());
            match state {
                Ok(Some(None)) => return Ok(None),
                Ok(Some(Some(s))) if s.closing() => return Ok(Some(s)),
                _ => {}
            }
            self.wait_store(crate::time::now_ns() + BACKEND_CHECK_NS)
                .await;
        }
    }
}

/// A vif's life: run the stack over it until the backend goes, the ring breaks or the
/// guest ends; close it; connect again when a backend returns.
#[embassy_executor::task(pool_size = MAX_VIFS)]
async fn vif_task(devices: &'static Devices, index: u32, stack: Stack, first: Netfront) {
    let mut nf = Some(first);
    let dev = Device::new("vif", index);
    loop {
        if let Some(n) = nf.take() {
            let backend = n.backend().clone();
            let mut runner = Runner::new(stack.clone(), n);
            let why = match select(runner.run(), devices.backend_gone(&dev, &backend)).await {
                Either::First(_) => "a broken ring",
                Either::Second(Ok(_)) => "its backend went away",
                Either::Second(Err(())) => "the guest is ending",
            };
            let t0 = crate::time::now_ns();
            let n = runner.into_device();
            // Its port is closed next: no idle poll may name it.
            exec::forget(n.port());
            let kept = devices.close(n.begin_close()).await;
            crate::println!(
                "xenpv-rt: vif{index} closed ({why}) in {} ms pages_kept={kept}",
                (crate::time::now_ns() - t0) / 1_000_000
            );
        }
        if devices.is_closing() {
            devices.open.set(devices.open.get() - 1);
            return;
        }
        devices
            .wait_store(crate::time::now_ns() + REATTACH_EVERY_NS)
            .await;
        if devices.is_closing() {
            continue;
        }
        match devices.connect(index).await {
            Ok(n) => {
                crate::println!("xenpv-rt: vif{index} reattached");
                nf = Some(n);
            }
            // No backend yet (the usual case while detached): try again later.
            Err(_) => Timer::after(Duration::from_nanos(REATTACH_EVERY_NS)).await,
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
struct MacFmt([u8; 6]);
impl core::fmt::Display for MacFmt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char(':')?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// `dhcp` or `A.B.C.D/P`.
struct AddrFmt(Addressing);
impl core::fmt::Display for AddrFmt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Addressing::Dhcp => f.write_str("dhcp"),
            Addressing::Static { cidr, .. } => write!(f, "{cidr}"),
        }
    }
}
