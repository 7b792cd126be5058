//! The defmt global logger: frames on the console, one per line (`xenpv_contract::defmt_line`).

mod logger {
    use core::sync::atomic::{AtomicBool, Ordering};
    use xenpv_contract::defmt_line::{base64, MARKER, MAX_FRAME};

    /// The frame being encoded, at most [`MAX_FRAME`] bytes.
    struct Frame {
        buf: [u8; MAX_FRAME],
        len: usize,
        overflow: bool,
        encoder: defmt::Encoder,
    }

    static FRAME: spin::Mutex<Frame> = spin::Mutex::new(Frame {
        buf: [0; MAX_FRAME],
        len: 0,
        overflow: false,
        encoder: defmt::Encoder::new(),
    });
    static TAKEN: AtomicBool = AtomicBool::new(false);
    /// Logs started while a frame was open (a log from inside a log): dropped whole.
    static NESTED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    /// Frames dropped that way, for the loss report at exit.
    pub(super) static DROPPED: core::sync::atomic::AtomicUsize =
        core::sync::atomic::AtomicUsize::new(0);

    /// defmt's global logger: one base64 frame per console line, after [`MARKER`].
    #[defmt::global_logger]
    struct Logger;

    /// Run an encoder step with the frame buffer as its sink.
    fn encode(
        step: impl FnOnce(&mut defmt::Encoder, &mut dyn FnMut(&[u8])),
    ) -> spin::MutexGuard<'static, Frame> {
        let mut f = FRAME.lock();
        let Frame {
            encoder,
            buf,
            len,
            overflow,
        } = &mut *f;
        step(encoder, &mut |b| put(buf, len, overflow, b));
        f
    }

    // SAFETY: defmt calls acquire/write/flush/release in that order from one context at a
    // time; TAKEN makes a nested acquire (a log from inside a log) a no-op instead of a
    // deadlock, and the frame buffer is only touched between acquire and release.
    unsafe impl defmt::Logger for Logger {
        fn acquire() {
            if TAKEN.swap(true, Ordering::Acquire) {
                NESTED.fetch_add(1, Ordering::Relaxed);
                DROPPED.fetch_add(1, Ordering::Relaxed);
                return;
            }
            {
                let mut f = FRAME.lock();
                f.len = 0;
                f.overflow = false;
            }
            encode(|e, sink| e.start_frame(sink));
        }
        unsafe fn flush() {}
        unsafe fn release() {
            if NESTED.load(Ordering::Relaxed) > 0 {
                NESTED.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            let f = encode(|e, sink| e.end_frame(sink));
            let mut line = [0u8; MARKER.len() + MAX_FRAME.div_ceil(3) * 4 + 1];
            line[..MARKER.len()].copy_from_slice(MARKER.as_bytes());
            let n = if f.overflow {
                line[MARKER.len()..MARKER.len() + 9].copy_from_slice(b"!overflow");
                MARKER.len() + 9
            } else {
                MARKER.len() + base64(&f.buf[..f.len], &mut line[MARKER.len()..]).unwrap_or(0)
            };
            line[n] = b'\n';
            crate::console::write_bytes(&line[..n + 1]);
            drop(f);
            TAKEN.store(false, Ordering::Release);
        }
        unsafe fn write(bytes: &[u8]) {
            if NESTED.load(Ordering::Relaxed) > 0 {
                return;
            }
            drop(encode(|e, sink| e.write(bytes, sink)));
        }
    }

    fn put(buf: &mut [u8; MAX_FRAME], len: &mut usize, overflow: &mut bool, b: &[u8]) {
        match buf.get_mut(*len..*len + b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                *len += b.len();
            }
            None => *overflow = true,
        }
    }

    /// Xen system time, once shared_info is mapped (0 before the paging takeover).
    static CLOCK_UP: AtomicBool = AtomicBool::new(false);
    /// shared_info is mapped: timestamps read Xen system time from now on.
    pub fn clock_up() {
        CLOCK_UP.store(true, Ordering::Release);
    }
    defmt::timestamp!("{=u64:us}", {
        if CLOCK_UP.load(Ordering::Acquire) {
            crate::time::now_ns() / 1000
        } else {
            0
        }
    });
}

pub use logger::clock_up;

/// defmt frames dropped because a log started inside another (a nested log).
pub(crate) fn dropped_frames() -> usize {
    logger::DROPPED.load(core::sync::atomic::Ordering::Relaxed)
}
