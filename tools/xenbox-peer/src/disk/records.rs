//! `disk-records DEVICE`: check, from dom0, the records the appliance's disk writer left
//! on its disk (`xenpv_contract::records`), after the guest ended: every record from
//! sector 0 on the record of its own index, sealed by its CRC, no clock or epoch going
//! back, until the first empty sector.
use std::io::Read;

use super::{open, Aligned};
use crate::args::{Opt, Parsed, Spec, Usage};
use crate::verdict::Verdict;
use xenpv_contract::records::{Scan, SECTOR};

/// `disk-records`.
pub static RECORDS: Spec = Spec {
    name: "disk-records",
    args: &["DEVICE"],
    about: "Read DEVICE from its start with O_DIRECT and check the appliance's disk writer's\n\
            records (one 512-byte sector each: magic, seq, mono_ns, epoch, CRC-32): record\n\
            N in sector N, every CRC right, no clock or epoch going back, until the first\n\
            all-zero sector (or --max-sectors). Reports records, last_seq, last_mono_ns,\n\
            last_epoch and, on a bad sector, bad_sector and why.\n\
            PASS iff no sector was bad and there are at least --min records (exactly\n\
            --written, if given).",
    opts: &[
        Opt::val("min", "N", "1", "fewest records expected"),
        Opt::val(
            "written",
            "N",
            "-1",
            "the records the guest said it wrote (-1: not checked)",
        ),
        Opt::val(
            "max-sectors",
            "N",
            "1048576",
            "read at most N sectors (512 MiB)",
        ),
    ],
};

/// Run `disk-records`.
pub fn run(p: &Parsed) -> Result<Verdict, Usage> {
    let min = p.u64("min")?;
    let written = match p.text("written") {
        Some("-1") | None => None,
        Some(_) => Some(p.u64("written")?),
    };
    let max = p.u64_in("max-sectors", 1, 1 << 32)?;
    let mut v = Verdict::new(RECORDS.name);
    let Some(mut f) = open(&p.pos[0], false, &mut v) else {
        return Ok(v);
    };
    let mut buf = Aligned::new();
    let mut scan = Scan::default();
    let mut at = 0u64;
    'read: while at < max {
        let n = ((max - at) as usize * SECTOR).min(1 << 20);
        let b = buf.buf(n);
        let got = match read_up_to(&mut f, b) {
            Ok(g) => g,
            Err(e) => {
                v.fail("read");
                v.kv("at_sector", at);
                v.kv("error", e);
                return Ok(v);
            }
        };
        for s in b[..got - got % SECTOR].chunks_exact(SECTOR) {
            let s: &[u8; SECTOR] = s.try_into().expect("a whole sector");
            if !scan.push(s) {
                break 'read;
            }
        }
        if got < n {
            break; // the device's end
        }
        at += (n / SECTOR) as u64;
    }
    verdict(&mut v, &scan, min, written);
    Ok(v)
}

/// Fill as much of `b` as the device has (less at its end).
fn read_up_to(f: &mut std::fs::File, b: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < b.len() {
        match f.read(&mut b[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// The verdict of a finished scan.
fn verdict(v: &mut Verdict, scan: &Scan, min: u64, written: Option<u64>) {
    v.kv("records", scan.records());
    let last = scan.last();
    v.kv("last_seq", last.map_or(-1, |r| r.seq as i128));
    v.kv("last_mono_ns", last.map_or(0, |r| r.mono_ns));
    v.kv("last_epoch", last.map_or(0, |r| r.epoch));
    if let Some((sector, why)) = scan.bad() {
        v.fail("bad-record");
        v.kv("bad_sector", sector);
        v.kv("why", why);
    }
    if scan.records() < min {
        v.fail("too-few");
        v.kv("min", min);
    }
    if let Some(w) = written.filter(|&w| w != scan.records()) {
        v.fail("not-as-written");
        v.kv("written", w);
    }
}

#[cfg(test)]
mod tests {
    use crate::net::testsrv::cmd;
    use xenpv_contract::records::{encode, Record, SECTOR};

    fn image(name: &str, n: u64) -> (std::path::PathBuf, Vec<u8>) {
        let d = std::env::temp_dir().join(format!("peer-rec-{name}-{}", std::process::id()));
        let mut bytes = vec![0u8; 1 << 20];
        for seq in 0..n {
            let r = Record {
                seq,
                mono_ns: 5 + seq * 1_000,
                epoch: (seq / 10) as u32,
            };
            let s: &mut [u8; SECTOR] = (&mut bytes[seq as usize * SECTOR..][..SECTOR])
                .try_into()
                .unwrap();
            encode(&r, s);
        }
        std::fs::write(&d, &bytes).unwrap();
        (d, bytes)
    }

    #[test]
    fn good_records_pass_and_each_damage_fails() {
        let (d, mut bytes) = image("a", 40);
        let path = d.to_str().unwrap();
        let v = cmd(&["disk-records", path, "--min", "40", "--written", "40"]);
        assert!(v.passed(), "{v}");
        assert_eq!(
            (v.get("records"), v.get("last_seq"), v.get("last_epoch")),
            (Some("40"), Some("39"), Some("3"))
        );
        let v = cmd(&["disk-records", path, "--min", "41"]);
        assert_eq!(v.reason(), Some("too-few"), "{v}");
        let v = cmd(&["disk-records", path, "--written", "41"]);
        assert_eq!(v.reason(), Some("not-as-written"), "{v}");
        bytes[17 * SECTOR + 20] ^= 4;
        std::fs::write(&d, &bytes).unwrap();
        let v = cmd(&["disk-records", path]);
        assert_eq!(v.reason(), Some("bad-record"), "{v}");
        assert_eq!(v.get("bad_sector"), Some("17"));
        assert!(v.get("why").unwrap().starts_with("crc-"), "{v}");
        std::fs::remove_file(&d).unwrap();
        let (d, _) = image("b", 0);
        let v = cmd(&["disk-records", d.to_str().unwrap()]);
        assert_eq!(v.reason(), Some("too-few"), "no record at all: {v}");
        std::fs::remove_file(&d).unwrap();
    }
}
