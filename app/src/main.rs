//! The sample unikernel: boots on xenpv-rt, reports what it was given, and does what the
//! command line asks (`panic`, `exit=N`), so that boot tests can drive it. A failed check
//! exits with its [`AppStatus`].
#![no_std]
#![no_main]

use xenpv_contract::report;
use xenpv_contract::report::Writer;
use xenpv_contract::status::AppStatus;
use xenpv_rt::mm::{DirectMapState, MmuCounts};
use xenpv_rt::{println, Boot};

mod async_net;
mod blk;
mod enet;
mod events;
mod faults;
mod fmt_log;
mod grants;
mod heap;
mod net;
mod store;
mod stress;
mod tasks;
mod ticker;

xenpv_rt::entry!(main);
xenpv_rt::main!(task async_app = tasks::app);
xenpv_rt::main!(task async_net_app = async_net::app);
xenpv_rt::main!(task net_app = net::app);
xenpv_rt::main!(task enet_app = enet::app);
xenpv_rt::main!(task ticker_app = ticker::app);

fn main(boot: &mut Boot) -> i32 {
    let role = if boot.is_dom0() { "dom0" } else { "domU" };
    println!(
        "xenpv-app: hello from xenpv-rt {} ({role})",
        xenpv_rt::VERSION
    );
    println!("start_info: {}", boot.start_info());
    let pages = boot.start_info().nr_pages;
    if boot.cmdline().has("defmt_damage") {
        // What a mangled console would deliver: the decoder must say so and go on.
        println!("=defmt=AQCj8R4A!!");
        println!("=defmt=AQCj");
        println!("=defmt=!overflow");
    }
    defmt::info!(
        "defmt: {=str} has {=u64} pages, split {=str}",
        role,
        pages,
        boot.memory().split().name()
    );

    let mut status = 0;
    let timing = boot.timing();
    let m = boot.memory();
    let MmuCounts {
        hypercalls: calls,
        pt_updates: updates,
    } = m.mmu_counts();
    let pages = m.frames().nr_pages();
    let takeover_ns = timing.takeover_ns().max(1);
    let DirectMapState {
        mode,
        mapped_chunks: mapped,
        ..
    } = m.direct_map();
    // The figures `cargo xtask bench` reads back: a report.
    println!(
        "{}",
        report!(
            "timing",
            entry_to_main_us = timing.entry_to_main_ns() / 1000,
            paging_setup_us = takeover_ns / 1000,
            paging_pte_updates = updates,
            paging_hypercalls = calls,
            paging_per_hypercall = updates.checked_div(calls).unwrap_or(0),
            paging_pages_per_s = pages as u128 * 1_000_000_000 / takeover_ns as u128,
            direct_map = if mode.eager { "eager" } else { "on-demand" },
            mapped_mib = mapped * 2,
            pt_write = mode.pt_write.name(),
        )
    );
    let p = boot.memory().phases();
    println!(
        "timing: paging phases (us): read={} plan={} plan_in_xen={} allocator={} eager_map={} eager_map_in_xen={}",
        p.read_ns / 1000,
        p.plan_ns / 1000,
        p.plan_xen_ns / 1000,
        p.allocator_ns / 1000,
        p.eager_ns / 1000,
        p.eager_xen_ns / 1000
    );
    println!("{}", boot.layout_top());
    let report = boot.memory().report();
    println!("{report}");
    if !report.ok() {
        status = AppStatus::Layout.into();
    }
    // shared_info through fixmap slot 0: vCPU 0's event mask must read back as Xen set it.
    let si = boot.memory().shared_info();
    // SAFETY: the runtime maps shared_info at fixmap slot 0; a volatile read of a u8 field.
    let mask =
        unsafe { core::ptr::addr_of!((*si).vcpu_info[0].evtchn_upcall_mask).read_volatile() };
    println!(
        "{}",
        Writer::new("layout")
            .word("shared_info")
            .field("fixmap", &format_args!("{:#x}", si as u64))
            .field("vcpu0_upcall_mask", &mask)
    );
    let mut initrd_checksum = None;
    match boot.initrd() {
        None if boot.start_info().module.is_none() => {
            println!("{}", Writer::new("initrd").word("none"))
        }
        None => println!("initrd: present but not mapped yet"),
        Some(bytes) => match xenpv_rt::initrd::verify(bytes) {
            Ok(v) => {
                initrd_checksum = Some(v.header.checksum);
                println!(
                    "{}",
                    Writer::new("initrd")
                        .word("ok")
                        .field("len", &v.header.total_len)
                        .field("seed", &v.header.seed)
                        .field("checksum", &format_args!("{:#018x}", v.header.checksum))
                )
            }
            Err(xenpv_rt::initrd::ImageError::BadMagic) => {
                println!("initrd: {} bytes, not a checked image", bytes.len())
            }
            Err(e) => {
                println!("initrd: BAD {e}");
                status = AppStatus::Failed.into();
            }
        },
    }

    let cmd = boot.cmdline();
    if cmd.has("stress") {
        let num = |k: &str, default: u64| match cmd.u64(k) {
            Ok(v) => Some(v.unwrap_or(default)),
            Err(e) => {
                println!("xenpv-app: {e}");
                None
            }
        };
        let (Some(seed), Some(cycles), Some(max_pages)) =
            (num("seed", 1), num("cycles", 400), num("max_pages", 2048))
        else {
            return AppStatus::Usage.into();
        };
        let cfg = stress::Config {
            seed,
            cycles,
            max_pages: max_pages.clamp(1, 65536),
        };
        if let Ok(Some(n)) = cmd.u64("stress_batch") {
            if let Err(e) = boot.memory().set_mmu_batch(n as usize) {
                println!("xenpv-app: {e}");
                return AppStatus::Usage.into();
            }
        }
        if !stress::run(boot, &cfg, initrd_checksum) && status == 0 {
            status = AppStatus::Stress.into();
        }
    }
    let cmd = boot.cmdline();
    if cmd.has("vmap_demo") {
        // Module space in use, for the layout picture: two areas, the report again, gone.
        let m = boot.memory();
        match (m.vmalloc(3 << 20), m.vmalloc(5 << 20)) {
            (Ok(a), Ok(b)) => {
                println!("{}", m.report());
                let (_, _) = (m.vfree(a), m.vfree(b));
            }
            (a, b) => println!("vmap_demo: {:?} {:?}", a.err(), b.err()),
        }
    }
    let cmd = boot.cmdline();
    if let Ok(Some(n)) = cmd.u64("burst") {
        // A long run of numbered lines: the console must deliver all, in order.
        for i in 0..n {
            let hash = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            println!(
                "{}",
                report!(
                    "burst",
                    line = i,
                    of = n,
                    hash = format_args!("{hash:016x}")
                )
            );
        }
        let lost = xenpv_rt::console::ring::lost_bytes();
        println!(
            "{}",
            Writer::new("burst")
                .word("done")
                .field("n", &n)
                .field("lost", &lost)
        );
    }
    if cmd.has("fmt_log") {
        fmt_log::run(boot.start_info().nr_pages);
    }
    if cmd.has("heap_oom") {
        heap::oom();
    }
    if cmd.has("heap") {
        let n = |k: &str, d: u64| cmd.u64(k).ok().flatten().unwrap_or(d);
        if !heap::run(n("seed", 1), n("heap_ops", 20_000), n("heap_mib", 256)) && status == 0 {
            status = AppStatus::Heap.into();
        }
    }
    if cmd.has("net") {
        // The appliance on the async runtime: serves until the toolstack stops it.
        return xenpv_rt::runtime::main_with(boot, net_app);
    }
    if cmd.has("enet") {
        return xenpv_rt::runtime::main_with(boot, enet_app);
    }
    if cmd.has("async_net") {
        return xenpv_rt::runtime::main_with(boot, async_net_app);
    }
    if cmd.has("async") {
        return xenpv_rt::runtime::main_with(boot, async_app);
    }
    if cmd.has("ticker") {
        return xenpv_rt::runtime::main_with(boot, ticker_app);
    }
    if cmd.has("blkbench") {
        return blk::bench(boot);
    }
    if cmd.has("blk") {
        // The storage check: every disk, the pattern, the refusals (README).
        return blk::run(boot);
    }
    let (grant, store) = (cmd.has("grant"), cmd.has("xenstore"));
    if cmd.has("events") {
        let n = cmd.u64("timer_events").ok().flatten().unwrap_or(2000);
        let period = cmd.u64("timer_us").ok().flatten().unwrap_or(1000).max(1);
        if !events::run(n, period) && status == 0 {
            status = AppStatus::Events.into();
        }
    }
    if grant && !grants::run(boot) && status == 0 {
        status = AppStatus::Grants.into();
    }
    if store && !store::run(boot) && status == 0 {
        status = AppStatus::Xenstore.into();
    }
    // The direct map now: what start of day mapped, what the allocations since mapped.
    let m = boot.memory();
    let DirectMapState {
        mode,
        mapped_chunks: mapped,
        chunks,
    } = m.direct_map();
    let start: u64 = m.outcome().start_chunks.iter().map(|(s, e)| e - s).sum();
    let grown = m.direct_map_stats().unwrap_or_default();
    let free = m.frames().available_frames();
    println!(
        "{}",
        report!(
            "direct_map",
            mode = if mode.eager { "eager" } else { "on-demand" },
            start_mib = start * 2,
            mapped_mib = mapped * 2,
            of_mib = chunks * 2,
            chunks_grown = grown.chunks_mapped,
            pte_updates = grown.pt_updates,
            holes = grown.holes,
            available_frames = free,
        )
    );
    let cmd = boot.cmdline();
    // `hold-console`: the panic or fault happens while the console ring's lock is held,
    // as in the middle of a console write.
    let hold = cmd.has("hold-console");
    if let Some(kind) = cmd.value("fault") {
        let Ok(k) = heapless::String::<32>::try_from(kind) else {
            println!("xenpv-app: fault={kind:?} is longer than any kind");
            return AppStatus::Usage.into();
        };
        return faults::provoke(boot, &k, hold);
    }
    let cmd = boot.cmdline();
    if cmd.has("panic") {
        let panic = || panic!("provoked panic (command line word `panic`)");
        if hold {
            xenpv_rt::console::ring::_with_ring_locked(panic);
        }
        panic();
    }
    match cmd.u64("exit") {
        Ok(Some(n)) => return n.min(i32::MAX as u64) as i32,
        Ok(None) => {}
        Err(e) => {
            println!("xenpv-app: {e}");
            return AppStatus::Usage.into();
        }
    }
    status
}
