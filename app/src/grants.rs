//! Grant tables under Xen, with real operations on the grants: Xen copies a page through
//! a grant reference (byte for byte), refuses a write through a read-only grant, maps the
//! grant back (so ending access must be refused while it is mapped), and references run
//! out with an error.

extern crate alloc;

use alloc::vec::Vec;
use xenpv_contract::report;
use xenpv_contract::report::Writer;
use xenpv_rt::gnttab::{by_frame, by_ref, GntError, GrantTable};
use xenpv_rt::hypercall::DOMID_SELF;
use xenpv_rt::shared_page::SharedPage;
use xenpv_rt::{println, Boot};

/// Our domain id as dom0 (grants name the domain allowed in).
const DOM0: u16 = 0;

pub fn run(boot: &mut Boot) -> bool {
    if !boot.is_dom0() {
        return offer(boot).unwrap_or_else(|e| {
            println!("grant: {e}");
            false
        });
    }
    match go(boot) {
        Ok(pass) => pass,
        Err(e) => {
            println!("grant: {e}");
            println!("grant: verdict=FAIL");
            false
        }
    }
}

fn go(boot: &mut Boot) -> Result<bool, GntError> {
    let mem = boot.memory();
    let mut gt = GrantTable::setup(mem, 1)?;
    // One table per guest: a second setup (a second free list over the same entries)
    // is refused.
    let second_refused = match GrantTable::setup(mem, 1) {
        Err(e) => {
            println!("grant: second setup refused: {e}");
            matches!(e, GntError::AlreadySetUp)
        }
        Ok(_) => {
            println!("grant: second setup ACCEPTED");
            false
        }
    };
    let (Some(mut src), Some(dst)) = (SharedPage::alloc(mem), SharedPage::alloc(mem)) else {
        println!("grant: no free frames");
        return Ok(false);
    };
    let mut src_bytes = [0u8; 4096];
    for (i, b) in src_bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0xa5;
    }
    src.write_bytes(0, &src_bytes);
    let self_dom = DOMID_SELF as u16;

    // 1. Xen copies our page through a read-only grant into another frame.
    let g = gt.grant(DOM0, src, true).map_err(|(_, e)| e)?;
    let r = g.gref();
    GrantTable::copy(by_ref(r, self_dom), by_frame(dst.page()), 4096)?;
    let mut got = [0u8; 4096];
    dst.read_bytes(0, &mut got);
    let same = got == src_bytes;
    let diff = got
        .iter()
        .zip(src_bytes.iter())
        .filter(|(a, b)| a != b)
        .count();
    println!(
        "{}",
        Writer::new("grant")
            .word("copy")
            .field("ref", &r)
            .field("bytes", &4096)
            .field("differ", &diff)
    );

    // 2. Writing through the read-only grant is refused by Xen.
    let ro = GrantTable::copy(by_frame(dst.page()), by_ref(r, self_dom), 16);
    let ro_refused = matches!(ro, Err(GntError::Status(..)));
    match ro {
        Err(e) => println!("grant: write through read-only ref {r} refused: {e}"),
        Ok(()) => println!("grant: write through read-only ref {r} was ALLOWED"),
    }

    // 3. Map the grant back as a peer would: while mapped, ending access is refused.
    let m = GrantTable::map(mem, DOM0, r, true)?;
    let mut seen = [0u8; 4096];
    m.read(&mut seen);
    let mapped_same = seen[..] == src_bytes[..];
    // One slot for mapping grants back: a second mapping is refused while this one lives.
    let second = GrantTable::map(mem, DOM0, r, true);
    let slot_owned = matches!(second, Err(GntError::MapSlotBusy));
    match second {
        Err(e) => println!("grant: second map while mapped: {e}"),
        Ok(m2) => {
            println!("grant: second map while mapped: ACCEPTED");
            let _ = GrantTable::unmap(m2);
        }
    }
    // Refused: the guard (and the page) come back, still granted.
    let (refused_in_use, held) = match gt.end(g) {
        Err((g, e)) => {
            println!("grant: end while mapped: {e}");
            (matches!(e, GntError::InUse { .. }), Ok(g))
        }
        Ok(p) => (false, Err(p)),
    };
    GrantTable::unmap(m)?;
    let (ended, src) = match held {
        Ok(g) => match gt.end(g) {
            Ok(p) => (true, Some(p)),
            Err((g, _)) => {
                gt.defer(g);
                (false, None)
            }
        },
        Err(p) => (false, Some(p)),
    };
    println!(
        "{}",
        Writer::new("grant")
            .word("mapped-back")
            .field("ref", &r)
            .field("contents", if mapped_same { "same" } else { "DIFFERENT" })
            .field("end_refused_while_mapped", yes(refused_in_use))
            .field("ended_after_unmap", yes(ended))
    );

    // 4. A grant kept by its peer is deferred, not freed, and comes back once the peer
    //    lets go.
    let kept_back = match src {
        Some(p) => kept_and_retried(mem, &mut gt, p)?,
        None => false,
    };

    // 5. References run out with an error, and all come back (a page per grant).
    let (free0, mut taken) = (gt.free_count(), Vec::new());
    let exhausted = loop {
        let Some(p) = SharedPage::alloc(mem) else {
            break None;
        };
        match gt.grant(DOM0, p, true) {
            Ok(g) => taken.push(g),
            Err((p, e)) => {
                p.free(mem);
                break Some(e);
            }
        }
    };
    let n = taken.len();
    for g in taken {
        match gt.end(g) {
            Ok(p) => p.free(mem),
            Err((g, e)) => {
                gt.defer(g);
                return Err(e);
            }
        }
    }
    let back = gt.free_count() == free0;
    match exhausted {
        Some(e) => println!("grant: after {n} grants: {e}; all back: {}", yes(back)),
        None => println!("grant: {n} grants and no exhaustion"),
    }
    dst.free(mem);
    let pass = second_refused
        && same
        && ro_refused
        && mapped_same
        && refused_in_use
        && slot_owned
        && ended
        && kept_back
        && matches!(exhausted, Some(GntError::Exhausted { .. }))
        && back;
    println!(
        "{}",
        report!("grant", verdict = if pass { "PASS" } else { "FAIL" })
    );
    Ok(pass)
}

/// Grant `page`, map it back (the peer keeps it) and drop the guard: the page goes to
/// the deferred list, a retry ends nothing while it is mapped, and after the unmap the
/// retry returns the reference and the page.
fn kept_and_retried(
    mem: &mut xenpv_rt::mm::Memory,
    gt: &mut GrantTable,
    page: SharedPage,
) -> Result<bool, GntError> {
    let free0 = gt.free_count();
    let g = gt.grant(DOM0, page, true).map_err(|(_, e)| e)?;
    let r = g.gref();
    let m = GrantTable::map(mem, DOM0, r, true)?;
    drop(g);
    let deferred = gt.deferred();
    let while_mapped = gt.retry_deferred(mem);
    GrantTable::unmap(m)?;
    let after = gt.retry_deferred(mem);
    let ok = deferred == 1
        && while_mapped == 0
        && after == 1
        && gt.deferred() == 0
        && gt.free_count() == free0;
    println!(
        "{}",
        Writer::new("grant")
            .word("kept-by-peer")
            .field("ref", &r)
            .field("deferred", &deferred)
            .field("back_while_mapped", &while_mapped)
            .field("back_after_unmap", &after)
            .field("deferred_now", &gt.deferred())
            .field("refs_all_back", yes(gt.free_count() == free0))
    );
    Ok(ok)
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

/// FNV-1a, as the dom0 peer computes it.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// As a domU: grant dom0 read access to a page and publish the reference and the page's
/// hash in xenstore; dom0 (the box's `xenbox-peer`) maps it and checks every byte. The
/// grant stays in place after we exit, for dom0 to map.
fn offer(boot: &mut Boot) -> Result<bool, GntError> {
    let mem = boot.memory();
    let mut gt = GrantTable::setup(mem, 1)?;
    let Some(mut page) = SharedPage::alloc(mem) else {
        println!("grant: no free frames");
        return Ok(false);
    };
    let mut bytes = [0u8; 4096];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151) ^ (i >> 8) as u8 ^ 0x5c;
    }
    page.write_bytes(0, &bytes);
    let hash = fnv(&bytes);
    let g = gt.grant(DOM0, page, true).map_err(|(_, e)| e)?;
    let r = g.gref();
    // Left granted (deferred, never freed) for dom0 to map after we exit.
    gt.defer(g);
    let Some(xs) = boot.xenstore() else {
        return Ok(false);
    };
    let mut v: heapless::String<24> = heapless::String::new();
    let _ = core::fmt::write(&mut v, format_args!("{r}"));
    let a = xs.write("data/xenpv-app/grant-ref", v.as_bytes());
    v.clear();
    let _ = core::fmt::write(&mut v, format_args!("{hash:016x}"));
    let b = xs.write("data/xenpv-app/grant-fnv", v.as_bytes());
    let ok = a.is_ok() && b.is_ok();
    println!(
        "{}",
        Writer::new("grant")
            .word("offered")
            .field("ref", &r)
            .field("to", "dom0")
            .field("access", "read-only")
            .field("fnv", &format_args!("{hash:016x}"))
            .field("published", yes(ok))
    );
    Ok(ok)
}
