//! A guest restored or migrated into a new domain, as the device layer sees it: xenstored
//! meets a new domain (watches gone, a new backend directory), netback and blkback are
//! new backends at Initialising. The frontends abandon their old rings without a word to
//! the old backends, connect again (re-reading the backend and its features), and a
//! block read that was in flight ends in `Resumed` and is issued again on the new ring.

use xenpv_protocol::blkfront::{check_reattach, Queue, Shape};
use xenpv_protocol::block::BlockError;
use xenpv_protocol::netfront as nf;
use xenpv_protocol::netif::IDS;
use xenpv_protocol::vif::{garp_frame, GARP_LEN};
use xenpv_protocol::xenbus::{connect, probe, Device, Flavor, Txn};
use xenpv_protocol::xenstore::{Xenstore, XsError};
use xenpv_testkit::blkback::{Blkback, Mode};
use xenpv_testkit::netback::{NetMode, Netback, Pages};
use xenpv_testkit::xenstored::{BackendKind, Xenstored, BACK, FRONT};

const SECOND: u64 = 1_000_000_000;

fn vif() -> Device {
    Device::new("vif", 0)
}

fn keys(t: &mut dyn Txn<Error = XsError>) -> Result<(), XsError> {
    t.write("tx-ring-ref", b"8")?;
    t.write("rx-ring-ref", b"9")?;
    t.write("event-channel", b"3")?;
    t.write("request-rx-copy", b"1")
}

/// Probe and connect vif 0 as netfront does; the backend's directory and domain.
fn handshake(xs: &mut Xenstore<Xenstored>) -> (String, u16) {
    let be = probe(xs, &vif()).expect("probe");
    let deadline = xs.link().clock + 5 * SECOND;
    connect(xs, &vif(), &be, Flavor::ConnectAtOnce, deadline, &mut keys).expect("connect");
    (be.path.as_str().to_string(), be.domid)
}

#[test]
fn a_restarted_xenstored_forgets_watches_and_names_a_new_backend() {
    let mut xs = Xenstore::new(Xenstored::with_backend(BackendKind::Honest));
    xs.link().set(&format!("{BACK}/feature-sg"), b"1");
    xs.link().set(&format!("{BACK}/feature-gso-tcpv4"), b"1");
    assert_eq!(handshake(&mut xs), (BACK.to_string(), 0));
    assert!(nf::backend_gso(&mut xs, BACK));
    xs.write("data/x", b"1").unwrap();

    xs.link().restart(9);
    let m = xs.link();
    assert_eq!(
        m.watch_count(),
        0,
        "xenstored keeps no watch of the old domain"
    );
    assert_eq!(m.get("domid"), Some(&b"9"[..]));
    assert_eq!(
        m.get("data/x"),
        None,
        "the new domain's directory starts empty"
    );
    assert_eq!(
        m.get(&format!("{BACK}/state")),
        None,
        "the old backend is gone"
    );
    assert_eq!(m.get(&format!("{FRONT}/state")), Some(&b"1"[..]));

    // Connect again at once: the backend is re-read (a new directory), the features
    // renegotiated (this host's backend offers no GSO), and the handshake starts from
    // the frontend's own state key that libxl wrote.
    let new_back = "/local/domain/0/backend/vif/9/0";
    assert_eq!(handshake(&mut xs), (new_back.to_string(), 0));
    assert!(!nf::backend_gso(&mut xs, new_back));
    let m = xs.link();
    assert_eq!(m.get(&format!("{new_back}/state")), Some(&b"4"[..]));
    assert_eq!(m.backend.as_ref().unwrap().front_history, b"14");
    assert_eq!(m.get(&format!("{FRONT}/tx-ring-ref")), Some(&b"8"[..]));
}

#[test]
fn a_watch_set_again_in_the_new_domain_fires_once() {
    let mut xs = Xenstore::new(Xenstored::new(xenpv_testkit::xenstored::Mode::Honest));
    xs.watch("memory/target", "balloon").unwrap();
    assert_eq!(xs.link().watch_count(), 1);
    xs.link().restart(7);
    assert_eq!(xs.link().watch_count(), 0);
    xs.watch("memory/target", "balloon").unwrap();
    assert_eq!(xs.link().watch_count(), 1);
}

#[test]
fn netfront_abandons_its_rings_and_runs_on_a_new_backend_with_a_gratuitous_arp() {
    let mut nb = Netback::new(NetMode::Honest);
    let mut bufs = Pages {
        tx: vec![[0; 4096]; IDS],
        rx: vec![[1; 4096]; IDS],
    };
    let mut q = nf::Queue::new(&mut nb.tx[..], &mut nb.rx[..]);
    q.refill(&mut nb.rx[..], &bufs);
    // Traffic first, so that every index of the old rings is past 0.
    let mut out = vec![0u8; nf::RX_FRAME_MAX];
    for _ in 0..3 {
        q.send(&mut nb.tx[..], &mut bufs, 60, |b| b.fill(7))
            .unwrap();
        q.flush(&mut nb.tx[..]);
        nb.incoming.push_back(70);
        nb.serve();
        q.reap_tx(&mut nb.tx[..]).unwrap();
        let p = q.recv(&mut nb.rx[..], &bufs, &mut out).unwrap().unwrap();
        assert_eq!(p.len, 70);
    }
    q.send(&mut nb.tx[..], &mut bufs, 60, |b| b.fill(7))
        .unwrap();
    q.flush(&mut nb.tx[..]);
    // Suspended before netback answered: a frame in flight, RX buffers posted.
    assert_eq!(q.tx_in_flight(), 1);
    let lost = nb.replace_backend();
    assert_eq!(lost, IDS - 3, "the RX buffers the old netback held");
    drop(q); // abandoned: nothing written to the old rings or the old backend

    let mut q = nf::Queue::new(&mut nb.tx[..], &mut nb.rx[..]);
    assert_eq!(q.tx_in_flight(), 0);
    q.refill(&mut nb.rx[..], &bufs);
    let garp = garp_frame([0, 0x16, 0x3e, 1, 2, 3], [10, 0, 0, 2]);
    q.send(&mut nb.tx[..], &mut bufs, GARP_LEN, |b| {
        b.copy_from_slice(&garp)
    })
    .unwrap();
    q.flush(&mut nb.tx[..]);
    nb.incoming.extend([100u16, 200]);
    nb.serve();
    q.reap_tx(&mut nb.tx[..]).unwrap();
    let mut got = vec![];
    while let Some(p) = q.recv(&mut nb.rx[..], &bufs, &mut out).unwrap() {
        got.push(p.len);
    }
    assert_eq!(got, [100, 200], "the new backend's traffic arrives");
    assert_eq!(nb.replaced, 1);
    let first_after = nb.sent.len() - 1;
    assert_eq!(
        nb.sent[first_after].size as usize, GARP_LEN,
        "the GARP went first"
    );
    assert_eq!(q.tx_in_flight(), 0);
}

fn disk_bytes() -> Vec<u8> {
    (0..1u32 << 20)
        .map(|i| (i / 512) as u8 ^ (i as u8))
        .collect()
}

#[test]
fn a_lent_read_gets_resumed_and_is_issued_again_on_the_new_backend() {
    let mut bb = Blkback::new(disk_bytes(), 512);
    let offer = bb.offer();
    assert_eq!(offer.flush, None);
    let mut q = Queue::new(&mut bb.ring, offer, Shape::for_offer(&offer, 64, 4), 51712);
    let before = q.geometry();
    let req_before = q.request_bytes();
    bb.mode = Mode::Silent;
    let mut buf = vec![0u8; 64 * 1024];
    let mut t = q.begin_read(&mut bb, 16, buf.len(), 5 * SECOND).unwrap();
    assert_eq!(q.step_read(&mut bb, &mut t, &mut buf), None);
    assert!(q.in_flight() > 0, "requests in flight at suspend");

    // New domain: the old backend's held requests are never answered.
    let lost = bb.replace_backend();
    assert!(lost > 0);
    assert_eq!(bb.live_grants(), 0, "the old domain's grants went with it");
    let abandoned = q.abandon_for_resume();
    assert_eq!(abandoned, lost);
    assert_eq!(q.in_flight(), 0, "nothing waits for the old backend");
    assert_eq!(
        q.step_read(&mut bb, &mut t, &mut buf),
        Some(Err(BlockError::Resumed))
    );
    assert_eq!(
        q.begin_read(&mut bb, 0, 512, 5 * SECOND).err(),
        Some(BlockError::Resumed)
    );

    // The new host's backend offers other features: flush and indirect segments.
    bb.flush_cache = true;
    bb.max_indirect = 64;
    let offer = bb.offer();
    let mut q = Queue::new(&mut bb.ring, offer, Shape::for_offer(&offer, 64, 4), 51712);
    check_reattach(&before, &q.geometry()).expect("same disk");
    assert!(
        q.request_bytes() > req_before,
        "indirect requests carry more"
    );
    // The read again, whole (reads are idempotent).
    buf.fill(0);
    q.read(&mut bb, 16, &mut buf, 10 * SECOND).unwrap();
    assert_eq!(&buf[..], &disk_bytes()[16 * 512..16 * 512 + 64 * 1024]);
    q.flush(&mut bb, 20 * SECOND).unwrap();
    assert_eq!(bb.flushes, 1);
    assert_eq!(bb.live_grants(), 0, "every grant of the new epoch ended");
    assert_eq!(bb.bad_end_grants, 0);
}

#[test]
fn a_disk_whose_geometry_changed_is_refused_naming_what() {
    let bb = Blkback::new(disk_bytes(), 512);
    let before = bb.offer().geometry;
    let bigger = Blkback::new(vec![0; 2 << 20], 512).offer().geometry;
    let e = check_reattach(&before, &bigger).unwrap_err();
    assert_eq!((e.what, e.before, e.after), ("sectors", 2048, 4096));
    assert_eq!(
        e.to_string(),
        "sectors changed across the new domain: 2048 before, 4096 now"
    );
    let mut ro = Blkback::new(disk_bytes(), 512);
    ro.read_only = true;
    let e = check_reattach(&before, &ro.offer().geometry).unwrap_err();
    assert_eq!(e.what, "read-only");
    let e = check_reattach(&before, &Blkback::new(disk_bytes(), 4096).offer().geometry);
    assert_eq!(e.unwrap_err().what, "sector-size");
}
