//! newc cpio archives, written (the box's initramfs, Linux guests') and read back.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// One member of the initramfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory (mode 0755).
    Dir,
    /// A regular file.
    File {
        /// Its bytes.
        data: Vec<u8>,
        /// Its permission bits (`0o755`, `0o644`).
        mode: u32,
    },
    /// A symbolic link to this target.
    Symlink(String),
    /// A character device (major, minor), mode 0600.
    CharDev(u32, u32),
}

/// An uncompressed newc cpio archive (what the kernel unpacks as initramfs); parent
/// directories are added, mtimes are 0 so the same inputs give the same bytes.
pub fn write_cpio(w: &mut impl Write, entries: &BTreeMap<String, Entry>) -> Result<(), String> {
    let mut all = entries.clone();
    for path in entries.keys() {
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            all.entry(d.to_string_lossy().into()).or_insert(Entry::Dir);
            p = d.parent();
        }
    }
    let mut ino = 1u32;
    let mut put = |w: &mut dyn Write,
                   name: &str,
                   mode: u32,
                   data: &[u8],
                   rdev: (u32, u32)|
     -> std::io::Result<()> {
        let namesize = name.len() + 1;
        let hdr = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0, 0, 1, 0, data.len(), 0, 0, rdev.0, rdev.1, 0
        );
        ino += 1;
        w.write_all(hdr.as_bytes())?;
        w.write_all(name.as_bytes())?;
        w.write_all(&[0])?;
        let pad = (4 - (110 + namesize) % 4) % 4;
        w.write_all(&[0; 3][..pad])?;
        w.write_all(data)?;
        w.write_all(&[0; 3][..(4 - data.len() % 4) % 4])
    };
    let io = |e: std::io::Error| format!("writing the initramfs: {e}");
    for (name, e) in &all {
        match e {
            Entry::Dir => put(w, name, 0o040755, &[], (0, 0)),
            Entry::File { data, mode } => put(w, name, 0o100000 | mode, data, (0, 0)),
            Entry::Symlink(t) => put(w, name, 0o120777, t.as_bytes(), (0, 0)),
            Entry::CharDev(maj, min) => put(w, name, 0o020600, &[], (*maj, *min)),
        }
        .map_err(io)?;
    }
    put(w, "TRAILER!!!", 0, &[], (0, 0)).map_err(io)
}

/// The bytes of file `name` in a newc cpio archive (as [`write_cpio`] makes them), `None`
/// if the archive has no such member.
pub fn cpio_file(data: &[u8], name: &str) -> Result<Option<Vec<u8>>, String> {
    let mut at = 0usize;
    let hex = |b: &[u8]| -> Result<usize, String> {
        let s = std::str::from_utf8(b).map_err(|_| "cpio: a header field is not text")?;
        usize::from_str_radix(s, 16).map_err(|e| format!("cpio: header field {s:?}: {e}"))
    };
    loop {
        let hdr = data
            .get(at..at + 110)
            .ok_or("cpio: the archive ends inside a header")?;
        if &hdr[..6] != b"070701" {
            return Err(format!("cpio: no newc header at offset {at}"));
        }
        let filesize = hex(&hdr[54..62])?;
        let namesize = hex(&hdr[94..102])?;
        let name_at = at + 110;
        let member = data
            .get(name_at..name_at + namesize)
            .ok_or("cpio: the archive ends inside a name")?;
        let member = &member[..namesize.saturating_sub(1)];
        let data_at = (name_at + namesize).next_multiple_of(4);
        if member == b"TRAILER!!!" {
            return Ok(None);
        }
        let body = data
            .get(data_at..data_at + filesize)
            .ok_or("cpio: the archive ends inside a file")?;
        if member == name.as_bytes() {
            return Ok(Some(body.to_vec()));
        }
        at = (data_at + filesize).next_multiple_of(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_is_newc_with_parents_and_a_trailer() {
        let mut e = BTreeMap::new();
        e.insert(
            "a/b/c".to_string(),
            Entry::File {
                data: b"hello".to_vec(),
                mode: 0o644,
            },
        );
        e.insert("dev/console".to_string(), Entry::CharDev(5, 1));
        let mut out = vec![];
        write_cpio(&mut out, &e).unwrap();
        let s = String::from_utf8_lossy(&out);
        assert!(s.starts_with("070701"));
        for name in ["a\0", "a/b\0", "a/b/c\0", "dev\0", "TRAILER!!!\0"] {
            assert!(s.contains(name), "{name:?}");
        }
        assert_eq!(out.len() % 4, 0);
        // Same input, same bytes.
        let mut again = vec![];
        write_cpio(&mut again, &e).unwrap();
        assert_eq!(out, again);
    }

    #[test]
    fn cpio_members_are_read_back() {
        let mut e = BTreeMap::new();
        e.insert(
            "bin/busybox".to_string(),
            Entry::File {
                data: b"BUSYBOX!x".to_vec(),
                mode: 0o755,
            },
        );
        e.insert(
            "init".to_string(),
            Entry::File {
                data: b"#!".to_vec(),
                mode: 0o755,
            },
        );
        e.insert("dev/console".to_string(), Entry::CharDev(5, 1));
        let mut out = vec![];
        write_cpio(&mut out, &e).unwrap();
        assert_eq!(
            cpio_file(&out, "bin/busybox").unwrap().as_deref(),
            Some(&b"BUSYBOX!x"[..])
        );
        assert_eq!(
            cpio_file(&out, "init").unwrap().as_deref(),
            Some(&b"#!"[..])
        );
        assert_eq!(cpio_file(&out, "bin/sh").unwrap(), None);
        assert!(cpio_file(b"not a cpio archive at all", "init").is_err());
        assert!(cpio_file(&out[..200], "init").is_err(), "cut short");
    }
}
