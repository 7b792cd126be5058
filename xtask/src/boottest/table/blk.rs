//! The storage rows: blkfront against Linux's blkback, files from an ext4 image, and
//! the hostile and stalled disks of issue 24.
use super::appliance_row;
use super::net::SHUTDOWN_DURING_TRANSFER_S;
use super::script_with;
use crate::boottest::reports::{dom0_like, like, runner_like};
use crate::boottest::{has, t, BootTest, Check};
use crate::cargo::Image;

/// dom0's side of the storage test (`EXPECT0=…` is put before it).
const BLK_SCRIPT: &str = include_str!("../scripts/blk_test.sh");

/// blkfront against Linux's blkback: a 256 MiB disk written with the pattern (first and
/// last sector, requests on both sides of the 11-segment limit) and checked in dom0 with
/// sha256sum, dom0's pattern checked by the guest, a flush, the refusals (past the end,
/// not whole sectors, a read-only disk) with the devices usable after, and a read-only
/// disk whose contents the host made.
pub fn blk() -> BootTest {
    let disk = |d: &str| format!("blk: {d}: ");
    let mut b = t(
        "domu-blk",
        Image::app(),
        "blk blk_ro_seed=3",
        0,
        vec![
            Check::Report(
                like("blk: xvda connected vbd=51712 sectors=524288 sector_size=512 bytes=268435456 ro=0 removable=0 flush=flush-cache backend_domain=0")
                    .nums(&["ms", "max_indirect", "request_kib"])
                    .all("backend= is dom0's vbd D/51712", |r| {
                        let b = r.field("backend").unwrap_or_default();
                        b.strip_prefix("/local/domain/0/backend/vbd/")
                            .and_then(|rest| rest.split_once('/'))
                            .filter(|(d, v)| d.parse::<u32>().is_ok() && *v == "51712")
                            .map(drop)
                            .ok_or(format!("backend={b}"))
                    }),
            ),
            Check::Report(
                like("blk: xvdb connected vbd=51728 sectors=32768 sector_size=512 bytes=16777216 ro=1")
                    .nums(&["ms"]),
            ),
            // Refusals: the runtime's error messages, said to the reader.
            has(&(disk("xvda") + "read past the end: refused: sectors 524288..524289 are past the end of the device (524288 sectors)")),
            has(&(disk("xvda") + "write across the end: refused: sectors 524287..524289 are past the end")),
            has(&(disk("xvda") + "a 100-byte buffer: refused: a buffer of 100 bytes is not a whole number of 512-byte sectors")),
            Check::Report(
                like("blk: xvda: wrote pattern seed=1 bytes=268435456").nums(&["calls", "ms"]),
            ),
            has(&(disk("xvda") + "flush: ok")),
            Check::Report(
                like("blk: xvda: verify seed=1 bytes=268435456 mismatched=0 first_mismatch=-1")
                    .nums(&["ms"]),
            ),
            has(&(disk("xvdb") + "write to a read-only disk: refused: the device is read-only")),
            has(&(disk("xvdb") + "read after it: ok")),
            Check::Report(like(
                "blk: xvdb: pattern seed=3 bytes=16777216 mismatched=0 first_mismatch=-1",
            )),
            // The script's line around sha256sum's output.
            Check::Regex(r"dom0\| sha256sum /dev/vd[a-z]: [0-9a-f]{64} ok"),
            Check::Report(dom0_like("peer: disk-verify PASS bytes=268435456 mismatched=0")),
            Check::Report(dom0_like("peer: disk-fill PASS bytes=268435456")),
            Check::Report(like(
                "blk: xvda: dom0's pattern seed=2 bytes=268435456 mismatched=0 first_mismatch=-1",
            )),
            Check::Report(
                like("blk: xvda: written_bytes=268435456 flushes=1 bad_id=0 not_in_flight=0 bad_operation=0 failed=0 late=0 retired=0 timed_out=0")
                    .nums(&["requests", "read_bytes", "notifies"])
                    .at_least("indirect", 1.0),
            ),
            Check::Report(like("blk: xvda: closed pages_kept=0 unacknowledged=0")),
            Check::Report(like("blk: PASS")),
            Check::Report(runner_like("xenbox: dom0-script exit 0")),
            Check::ExitLine,
        ],
    );
    b.memory_mib = 128;
    b.timeout_s = 900;
    b.prepare = Some(|b| {
        let d0 = crate::disks::blank("domu-blk-xvda.img", 256)?;
        let d1 = crate::disks::blank("domu-blk-xvdb.img", 16)?;
        crate::disks::fill(&d1, 3)?;
        b.disks = vec![
            crate::xenbox::Disk {
                path: d0,
                read_only: false,
                throttle: None,
            },
            crate::xenbox::Disk {
                path: d1,
                read_only: true,
                throttle: None,
            },
        ];
        let script = format!(
            "EXPECT0={}\n{BLK_SCRIPT}",
            crate::disks::pattern_sha256(1, 256 << 20)
        );
        b.dom0_script = Some(Box::leak(script.into_boxed_str()));
        Ok(())
    });
    b
}

/// dom0's side of the file server's test (the `check` lines are put after it).
const FILES_SCRIPT: &str = include_str!("../scripts/files_test.sh");

/// Files served over HTTP from an ext4 image (made by mkfs.ext4 -d on the host, read by
/// ext4-view over blkfront): a dozen files from 0 bytes to 64 MiB, each checked in dom0
/// (length, checksum header and body against the file it was built from); a missing
/// path is a 404, a path with `..` a 400.
pub fn files() -> BootTest {
    let mut b = appliance_row(
        "domu-blk-files",
        "net files ip=169.254.100.2/24",
        900,
        vec![
            Check::Report(
                like("net: files vbd=51712 sector_size=512 ro=1 fs=ext4").nums(&["sectors", "ms"]),
            ),
            Check::Report(dom0_like("peer: http-get PASS status=404")),
            Check::Report(dom0_like("peer: http-get PASS status=400")),
            Check::Report(like("net: served file_errors=0")),
        ],
    );
    b.prepare = Some(|b| {
        let (img, files) = crate::disks::ext4_files("domu-blk-files.img")?;
        b.disks = vec![crate::xenbox::Disk {
            path: img,
            read_only: true,
            throttle: None,
        }];
        let mut script = String::from(FILES_SCRIPT);
        for f in &files {
            script += &format!("check {} {} {}\n", f.path, f.len, f.fnv);
            b.checks.push(Check::Report(dom0_like(&format!(
                "peer: http-get PASS status=200 fnv={} bytes={} conns=1 ok=1",
                f.fnv, f.len
            ))));
        }
        script += "exit \"$fails\"\n";
        b.dom0_script = Some(Box::leak(script.into_boxed_str()));
        Ok(())
    });
    b
}

/// The file examples/read-file reads, and how many bytes at its end it reads again
/// after a seek: past a block's start (1 MiB + 3 bytes, 70001 at the end).
const READ_FILE: &str = "docs/deep/nested/1m-plus-3";
const READ_FILE_TAIL: usize = 70_001;

/// A consumer crate (examples/read-file, outside the app: the runtime's public API and
/// embedded-io only) takes the disk from the async runtime's device layer
/// (`rt.devices().disk(0)`), reads its first MiB as sectors (`disk.read(..).await`: its
/// FNV-1a must be the image's), then (`disk.ext4()`) reads a file of an ext4 disk through
/// `embedded_io::Read` (`read_exact` in 4000-byte pieces) and again after a `Seek` from
/// the end, as a domU with the image as `--disk` (read by Linux's blkback): both FNV-1a
/// sums must be the host's of the same bytes, and the runtime must close the disk once
/// the app returns.
pub fn read_file() -> BootTest {
    let mut b = t(
        "domu-example-read-file",
        Image::ReadFile,
        &format!("path=/{READ_FILE} tail={READ_FILE_TAIL}"),
        0,
        vec![
            Check::ExitLine,
            Check::Regex(r"xenpv-rt: vbd51712 closed in \d+ ms pages_kept=0"),
        ],
    );
    b.prepare = Some(|b| {
        let (img, files) = crate::disks::ext4_files("domu-example-read-file.img")?;
        // The image's first MiB, which the example reads as sectors (an async read).
        let mut head = vec![0u8; 1 << 20];
        std::io::Read::read_exact(
            &mut std::fs::File::open(&img).map_err(|e| format!("{}: {e}", img.display()))?,
            &mut head,
        )
        .map_err(|e| format!("{}: {e}", img.display()))?;
        b.checks.push(has(&format!(
            "read-file: sectors 0.. bytes=1048576 fnv={:016x}",
            crate::disks::fnv1a64(&head)
        )));
        b.disks = vec![crate::xenbox::Disk {
            path: img,
            read_only: true,
            throttle: None,
        }];
        let i = files
            .iter()
            .position(|f| f.path == READ_FILE)
            .ok_or(format!("{READ_FILE} is not in disks::FILES"))?;
        // The file's bytes as ext4_files wrote them (the pattern of seed 100 + i).
        let mut bytes = vec![0u8; files[i].len as usize];
        crate::disks::pattern(100 + i as u64, 0, &mut bytes);
        let (len, at) = (bytes.len(), bytes.len() - READ_FILE_TAIL);
        let tail = crate::disks::fnv1a64(&bytes[at..]);
        b.checks.push(has(&format!(
            "read-file: /{READ_FILE} bytes={len} fnv={}",
            files[i].fnv
        )));
        b.checks.push(has(&format!(
            "read-file: /{READ_FILE} seek=End(-{READ_FILE_TAIL}) at={at} bytes={READ_FILE_TAIL} fnv={tail:016x}"
        )));
        Ok(())
    });
    b
}

/// The appliance's refusal of a filesystem whose superblock claims more blocks than the
/// disk holds: a `net: files:` line naming the field.
const HOSTILE_EXT4_REFUSED: &str = r"net: files: vbd 51712: superblock refused: s_blocks_count is 4294967295, outside 1\.\.=\d+ \(the blocks the device holds\) \(serving without files\)";

/// A hostile disk (issue 24, the review's M4): an ext4 image whose superblock claims
/// 0xffffffff blocks in groups of one ([`crate::disks::ext4_hostile`]), booted with
/// `net files`: the appliance refuses the filesystem with an error naming the field
/// ([`HOSTILE_EXT4_REFUSED`]), does not panic, and keeps serving `/bytes`.
pub fn hostile_ext4() -> BootTest {
    let mut b = appliance_row(
        "domu-blk-hostile-ext4",
        "net files ip=169.254.100.2/24",
        600,
        vec![
            Check::Regex(HOSTILE_EXT4_REFUSED),
            Check::NotContains("panicked".into()),
            Check::Report(like("net: served file_errors=1")),
            Check::Report(
                dom0_like("peer: http-get PASS status=200 bytes=1048576").hex_digits("fnv", 16),
            ),
        ],
    );
    b.dom0_script = Some(script_with(
        &[],
        include_str!("../scripts/blk_hostile_ext4_test.sh"),
    ));
    b.prepare = Some(|b| {
        let img = crate::disks::ext4_hostile("domu-blk-hostile-ext4.img")?;
        b.disks = vec![crate::xenbox::Disk {
            path: img,
            read_only: true,
            throttle: None,
        }];
        Ok(())
    });
    b
}

/// QEMU throttling of the stalled-disk row's drive: a 4 MiB burst (dom0's probe of the
/// drive, the filesystem's load and the first rounds of the file's checksum), then 256
/// bytes a second: a 4 KiB read takes 16 s, past the appliance's disk deadline (5 s by
/// default), under blkfront's own 30 s.
const STALLED_DISK_THROTTLE: &str =
    "throttling.bps-total=256,throttling.bps-total-max=4194304,throttling.bps-total-max-length=1";

/// A disk that crawls (issue 24, M2): `GET /files/data/64m` while the drive is throttled
/// to [`STALLED_DISK_THROTTLE`]. The serving loop is not held by it: UDP echo round trips
/// meanwhile stay under 10x their idle median, the file is refused with a 503 (the
/// appliance's breaker, `disk_trips`), `/bytes` is still served, and `xl shutdown` is
/// honoured within [`SHUTDOWN_DURING_TRANSFER_S`].
pub fn stalled_disk() -> BootTest {
    let mut b = appliance_row(
        "domu-blk-stalled-disk",
        "net files ip=169.254.100.2/24",
        1200,
        vec![
            Check::Regex(r"dom0\| echo during the stalled read: ratio [\d.]+ \(limit 10\): ok"),
            Check::Report(dom0_like("peer: http-get PASS status=503")),
            Check::Report(
                dom0_like("peer: http-get PASS status=200 bytes=65536").hex_digits("fnv", 16),
            ),
            Check::Regex(
                r"dom0\| xl shutdown with the disk stalled: the domU stopped after \d+ ms .*: ok",
            ),
            Check::Report(
                like("net: served")
                    .at_least("disk_trips", 1.0)
                    .nums(&["disk_trips"]),
            ),
            Check::NotContains("panicked".into()),
        ],
    );
    b.dom0_script = Some(script_with(
        &[("SHUTDOWN_WITHIN", SHUTDOWN_DURING_TRANSFER_S.to_string())],
        include_str!("../scripts/blk_stalled_test.sh"),
    ));
    b.prepare = Some(|b| {
        let (img, _) = crate::disks::ext4_files("domu-blk-stalled-disk.img")?;
        b.disks = vec![crate::xenbox::Disk {
            path: img,
            read_only: true,
            throttle: Some(STALLED_DISK_THROTTLE.into()),
        }];
        Ok(())
    });
    b
}
