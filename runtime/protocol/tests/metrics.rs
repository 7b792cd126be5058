//! Guest metrics: the batches a snapshot makes, diffed against what was published, and
//! applied to a model xenstored.

use proptest::prelude::*;
use std::collections::BTreeMap;
use xenpv_protocol::metrics::*;
use xenpv_protocol::xenstore::{Xenstore, XsError};
use xenpv_testkit::xenstored::{Mode, Xenstored};

const A: [u8; 4] = [169, 254, 100, 2];
const B: [u8; 4] = [169, 254, 100, 50];
const C: [u8; 4] = [169, 254, 100, 51];

fn snap<'a>(vifs: &'a [VifAddrs], free: u64) -> Snapshot<'a> {
    Snapshot {
        version: "0.1.0",
        mem_total_kb: 262_144,
        mem_free_kb: free,
        vifs,
        unix_time_s: None,
    }
}

/// The plan's ops as `+key=value` and `-key`.
fn ops(p: &Plan) -> Vec<String> {
    p.ops
        .iter()
        .map(|op| match op {
            Op::Write(k, v) => format!("+{k}={v}"),
            Op::Remove(k) => format!("-{k}"),
        })
        .collect()
}

#[test]
fn the_first_batch_publishes_everything_the_agent_does() {
    let vifs = [VifAddrs::new(0, &[A])];
    let p = Publisher::new().plan(&snap(&vifs, 200_000), false);
    assert_eq!(
        ops(&p),
        [
            "-attr/vif",
            "+attr/PVAddons/Installed=1",
            "+attr/PVAddons/MajorVersion=1",
            "+attr/PVAddons/MinorVersion=0",
            "+attr/PVAddons/MicroVersion=0",
            "+attr/PVAddons/BuildVersion=xenpv-rt-0.1.0",
            "+data/os_distro=xenpv-rt",
            "+data/os_name=xenpv-rt 0.1.0",
            "+data/os_majorver=0",
            "+data/os_minorver=1",
            "+data/os_uname=0.1.0",
            "+data/meminfo_total=262144",
            "+data/meminfo_free=200000",
            "+attr/vif/0=",
            "+attr/vif/0/ipv4/0=169.254.100.2",
            "+data/updated=1",
        ]
    );
    assert_eq!(p.keys(), 15);
    assert_eq!(p.refused, Refused::default());
}

#[test]
fn only_what_changed_is_written_and_updated_follows_it() {
    let vifs = [VifAddrs::new(0, &[A])];
    let mut p = Publisher::new();
    let first = p.plan(&snap(&vifs, 200_000), false);
    p.commit(first);
    assert!(p.plan(&snap(&vifs, 200_000), false).ops.is_empty());
    let plan = p.plan(&snap(&vifs, 190_000), false);
    assert_eq!(ops(&plan), ["+data/meminfo_free=190000", "+data/updated=2"]);
    // Not committed (say the transaction failed): the next plan does it again.
    assert_eq!(ops(&p.plan(&snap(&vifs, 190_000), false)), ops(&plan));
    p.commit(plan);
    assert_eq!(p.batches(), 2);
    // A full refresh writes every current key again, and clears nothing.
    let full = ops(&p.plan(&snap(&vifs, 190_000), true));
    assert_eq!(full.len(), 10 + 2 + 2 + 1);
    assert!(full.iter().all(|o| o.starts_with('+')));
}

#[test]
fn a_dhcp_lease_arriving_later_and_changing_keeps_the_slot() {
    let mut p = Publisher::new();
    let none = [VifAddrs::new(0, &[])];
    let first = p.plan(&snap(&none, 1), false);
    assert!(ops(&first).contains(&"+attr/vif/0=".to_string()));
    assert!(!ops(&first).iter().any(|o| o.contains("ipv4")));
    p.commit(first);
    let leased = [VifAddrs::new(0, &[B])];
    let plan = p.plan(&snap(&leased, 1), false);
    assert_eq!(
        ops(&plan),
        ["+attr/vif/0/ipv4/0=169.254.100.50", "+data/updated=2"]
    );
    p.commit(plan);
    // A new lease: the freed slot 0 is taken again, nothing to remove.
    let renewed = [VifAddrs::new(0, &[C])];
    let plan = p.plan(&snap(&renewed, 1), false);
    assert_eq!(
        ops(&plan),
        ["+attr/vif/0/ipv4/0=169.254.100.51", "+data/updated=3"]
    );
    p.commit(plan);
    // The lease lost: its key removed.
    let plan = p.plan(&snap(&none, 1), false);
    assert_eq!(ops(&plan), ["-attr/vif/0/ipv4/0", "+data/updated=4"]);
}

#[test]
fn addresses_keep_their_slots_and_a_vif_gone_is_removed() {
    let mut p = Publisher::new();
    let two = [VifAddrs::new(0, &[A, B]), VifAddrs::new(3, &[C])];
    let first = p.plan(&snap(&two, 1), false);
    assert!(ops(&first).contains(&"+attr/vif/0/ipv4/1=169.254.100.50".to_string()));
    assert!(ops(&first).contains(&"+attr/vif/3/ipv4/0=169.254.100.51".to_string()));
    p.commit(first);
    // A goes: B stays in slot 1; vif 3 goes whole.
    let later = [VifAddrs::new(0, &[B])];
    let plan = p.plan(&snap(&later, 1), false);
    assert_eq!(
        ops(&plan),
        ["-attr/vif/0/ipv4/0", "-attr/vif/3", "+data/updated=2"]
    );
    p.commit(plan);
    // C arrives: the lowest free slot, 0.
    let again = [VifAddrs::new(0, &[C, B])];
    let plan = p.plan(&snap(&again, 1), false);
    assert_eq!(
        ops(&plan),
        ["+attr/vif/0/ipv4/0=169.254.100.51", "+data/updated=3"]
    );
}

#[test]
fn limits_are_kept_and_what_is_beyond_them_counted() {
    let many: Vec<[u8; 4]> = (0..12).map(|i| [10, 0, 0, i]).collect();
    let mut vifs: Vec<VifAddrs> = (0..10).map(|d| VifAddrs::new(d, &many)).collect();
    // A devid twice: the first one counts, the second is neither a vif nor refused.
    vifs.push(VifAddrs::new(0, &[A]));
    let p = Publisher::new().plan(&snap(&vifs, 1), false);
    assert_eq!(p.refused, Refused { vifs: 2, addrs: 20 });
    assert!(p.ops.len() <= MAX_OPS);
    assert_eq!(
        p.ops
            .iter()
            .filter(|o| matches!(o, Op::Write(Key::Ipv4(..), _)))
            .count(),
        80
    );
    assert!(!ops(&p).iter().any(|o| o.starts_with("+attr/vif/8")));
    // Duplicates are one address.
    assert_eq!(VifAddrs::new(0, &[A, A, B]).ipv4.len(), 2);
}

#[test]
fn versions_are_printable_and_bounded() {
    let s = |v: &'static str| Snapshot {
        version: v,
        ..snap(&[], 1)
    };
    let name = |v: &'static str| -> String {
        let p = Publisher::new().plan(&s(v), false);
        ops(&p)
            .into_iter()
            .find_map(|o| o.strip_prefix("+data/os_name=").map(String::from))
            .unwrap()
    };
    assert_eq!(name("1.2.3-rc\n\u{1b}[0m"), "xenpv-rt 1.2.3-rc??[0m");
    assert_eq!(name(""), "xenpv-rt unknown");
    assert_eq!(
        name(&*"9".repeat(100).leak()).len(),
        "xenpv-rt ".len() + VERSION_MAX
    );
    assert_eq!(printable(" a b\u{e9} ").collect::<String>(), "?a b??");
    let p = Publisher::new().plan(&s("2.17.0"), false);
    assert!(ops(&p).contains(&"+data/os_majorver=2".to_string()));
    assert!(ops(&p).contains(&"+data/os_minorver=17".to_string()));
    let p = Publisher::new().plan(&s("beta"), false);
    assert!(ops(&p).contains(&"+data/os_majorver=0".to_string()));
}

#[test]
fn updated_is_the_time_as_xe_guest_utilities_writes_it() {
    assert_eq!(Date(0).to_string(), "Thu Jan  1 00:00:00 1970");
    assert_eq!(Date(1_796_665_357).to_string(), "Mon Dec  7 17:42:37 2026");
    assert_eq!(Date(951_782_400).to_string(), "Tue Feb 29 00:00:00 2000");
    assert_eq!(Date(4_107_542_399).to_string(), "Sun Feb 28 23:59:59 2100");
    let s = Snapshot {
        unix_time_s: Some(1_796_665_357),
        ..snap(&[], 1)
    };
    let p = Publisher::new().plan(&s, false);
    assert_eq!(
        ops(&p).last().unwrap(),
        "+data/updated=Mon Dec  7 17:42:37 2026"
    );
}

/// The vif addresses dom0 sees in the model: devid -> slot -> address.
fn seen(x: &mut Xenstore<Xenstored>) -> BTreeMap<u32, BTreeMap<u8, String>> {
    let mut m: BTreeMap<u32, BTreeMap<u8, String>> = BTreeMap::new();
    for (k, v) in x.link().under("attr/vif") {
        let parts: Vec<&str> = k.split('/').collect();
        match parts[..] {
            ["attr", "vif", d] => {
                m.entry(d.parse().unwrap()).or_default();
            }
            ["attr", "vif", d, "ipv4", s] => {
                m.entry(d.parse().unwrap())
                    .or_default()
                    .insert(s.parse().unwrap(), String::from_utf8(v).unwrap());
            }
            _ => panic!("unexpected key {k}"),
        }
    }
    m
}

#[test]
fn batches_land_in_one_transaction_and_a_conflict_is_retried() {
    let mut x = Xenstore::new(Xenstored::new(Mode::Honest));
    x.link().set("attr/vif/7/ipv4/0", b"10.9.9.9"); // an earlier life's
    let vifs = [VifAddrs::new(0, &[A])];
    let mut p = Publisher::new();
    let plan = p.plan(&snap(&vifs, 5), false);
    x.link().eagain = 2;
    apply(&mut x, &plan.ops).unwrap();
    p.commit(plan);
    assert_eq!(x.link().get("data/meminfo_free"), Some(&b"5"[..]));
    assert_eq!(x.link().get("attr/PVAddons/MicroVersion"), Some(&b"0"[..]));
    assert_eq!(x.link().get("data/updated"), Some(&b"1"[..]));
    let want: BTreeMap<u32, BTreeMap<u8, String>> =
        [(0, [(0, "169.254.100.2".to_string())].into())].into();
    assert_eq!(seen(&mut x), want);
    // More conflicts than attempts: an error, nothing applied.
    let plan = p.plan(&snap(&vifs, 6), false);
    x.link().eagain = TX_ATTEMPTS;
    assert_eq!(
        apply(&mut x, &plan.ops),
        Err(XsError::Xenstore("EAGAIN".try_into().unwrap()))
    );
    assert_eq!(x.link().get("data/meminfo_free"), Some(&b"5"[..]));
    apply(&mut x, &plan.ops).unwrap();
    assert_eq!(x.link().get("data/meminfo_free"), Some(&b"6"[..]));
}

#[test]
fn a_silent_xenstored_is_an_error_and_the_next_plan_repeats_the_batch() {
    let mut x = Xenstore::new(Xenstored::new(Mode::Silent));
    let p = Publisher::new();
    let plan = p.plan(&snap(&[], 5), false);
    assert!(apply(&mut x, &plan.ops).is_err());
    assert_eq!(ops(&p.plan(&snap(&[], 5), false)), ops(&plan));
}

/// A vif's addresses: up to 4 from a pool of 6, so they come, go and come back.
fn vif_strategy() -> impl Strategy<Value = Vec<(u32, Vec<[u8; 4]>)>> {
    let addrs = proptest::collection::vec((0u8..6).prop_map(|i| [10, 0, 0, i]), 0..4);
    proptest::collection::vec((0u32..4, addrs), 0..4)
}

proptest! {
    /// Whatever the sequence of snapshots, after each batch dom0 sees exactly the
    /// snapshot's vifs and addresses, and an address that stays keeps its slot.
    #[test]
    fn dom0_sees_exactly_the_last_snapshot(seq in proptest::collection::vec(vif_strategy(), 1..12)) {
        let mut x = Xenstore::new(Xenstored::new(Mode::Honest));
        let mut p = Publisher::new();
        let mut before: BTreeMap<u32, BTreeMap<u8, String>> = BTreeMap::new();
        for (n, raw) in seq.iter().enumerate() {
            let vifs: Vec<VifAddrs> = raw.iter().map(|(d, a)| VifAddrs::new(*d, a)).collect();
            let plan = p.plan(&snap(&vifs, n as u64), n % 5 == 4);
            apply(&mut x, &plan.ops).unwrap();
            p.commit(plan);
            let now = seen(&mut x);
            // The first entry of a devid counts.
            let mut want: BTreeMap<u32, Vec<String>> = BTreeMap::new();
            for v in &vifs {
                want.entry(v.devid).or_insert_with(|| {
                    let mut a: Vec<String> = v.ipv4.iter()
                        .map(|a| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])).collect();
                    a.sort();
                    a
                });
            }
            let got: BTreeMap<u32, Vec<String>> = now.iter()
                .map(|(d, s)| { let mut a: Vec<String> = s.values().cloned().collect(); a.sort(); (*d, a) })
                .collect();
            prop_assert_eq!(&got, &want);
            for (d, slots) in &now {
                for (s, a) in slots {
                    if let Some(old) = before.get(d).and_then(|o| o.iter().find(|(_, v)| *v == a)) {
                        prop_assert_eq!(old.0, s, "{} moved on vif {}", a, d);
                    }
                }
            }
            let free = n.to_string();
            prop_assert_eq!(x.link().get("data/meminfo_free"), Some(free.as_bytes()));
            before = now;
        }
    }
}
