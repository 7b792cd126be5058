//! Grant tables under Xen, with real operations on the grants: Xen copies a page through
//! a grant reference (byte for byte), refuses a write through a read-only grant, maps the
//! grant back (so ending access must be refused while it is mapped), and references run
//! out with an error.

use xenpv_rt::gnttab::{
    by_frame, by_ref, GntError, GrantTable, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF,
};
use xenpv_rt::hypercall::DOMID_SELF;
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
    let (Some(mut src), Some(mut dst)) = (mem.alloc_page(), mem.alloc_page()) else {
        println!("grant: no free frames");
        return Ok(false);
    };
    for (i, b) in mem.page_mut(&mut src).iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0xa5;
    }
    mem.page_mut(&mut dst).fill(0);
    let self_dom = DOMID_SELF as u16;

    // 1. Xen copies our page through a read-only grant into another frame.
    let r = gt.grant(DOM0, &src, true)?;
    GrantTable::copy(
        by_ref(r, self_dom),
        by_frame(&dst),
        4096,
        GNTCOPY_SOURCE_GREF,
    )?;
    let src_bytes = *mem.page_mut(&mut src);
    let same = mem.page_mut(&mut dst)[..] == src_bytes[..];
    let diff = mem
        .page_mut(&mut dst)
        .iter()
        .zip(src_bytes.iter())
        .filter(|(a, b)| a != b)
        .count();
    println!("grant: copy via ref {r}: 4096 bytes, {diff} differ");

    // 2. Writing through the read-only grant is refused by Xen.
    let ro = GrantTable::copy(by_frame(&dst), by_ref(r, self_dom), 16, GNTCOPY_DEST_GREF);
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
    let busy = gt.end(r);
    let refused_in_use = matches!(busy, Err(GntError::InUse { .. }));
    if let Err(e) = busy {
        println!("grant: end while mapped: {e}");
    }
    GrantTable::unmap(m)?;
    let ended = gt.end(r).is_ok();
    println!(
        "grant: mapped back via ref {r}: contents {}, end refused while mapped: {}, ended after unmap: {}",
        if mapped_same { "same" } else { "DIFFERENT" },
        yes(refused_in_use),
        yes(ended)
    );

    // 4. References run out with an error, and all come back.
    let (free0, mut taken) = (gt.free_count(), heapless::Vec::<u32, 512>::new());
    let exhausted = loop {
        match gt.grant(DOM0, &src, true) {
            Ok(g) => {
                if taken.push(g).is_err() {
                    break None;
                }
            }
            Err(e) => break Some(e),
        }
    };
    let n = taken.len();
    for g in taken {
        gt.end(g)?;
    }
    let back = gt.free_count() == free0;
    match exhausted {
        Some(e) => println!("grant: after {n} grants: {e}; all back: {}", yes(back)),
        None => println!("grant: {n} grants and no exhaustion"),
    }
    mem.free_page(src);
    mem.free_page(dst);
    let pass = same
        && ro_refused
        && mapped_same
        && refused_in_use
        && slot_owned
        && ended
        && matches!(exhausted, Some(GntError::Exhausted { .. }))
        && back;
    println!("grant: verdict={}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
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
    let Some(mut page) = mem.alloc_page() else {
        println!("grant: no free frames");
        return Ok(false);
    };
    for (i, b) in mem.page_mut(&mut page).iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151) ^ (i >> 8) as u8 ^ 0x5c;
    }
    let hash = fnv(&mem.page_mut(&mut page)[..]);
    let r = gt.grant(DOM0, &page, true)?;
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
        "grant: offered ref {r} to dom0 read-only, fnv={hash:016x}, published={}",
        yes(ok)
    );
    Ok(ok)
}
