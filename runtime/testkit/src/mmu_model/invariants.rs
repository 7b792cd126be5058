//! `check_invariants`: recompute every reference from the tables, pins and base, and
//! compare with the counts the model keeps.

use super::*;

/// What the tables, pins and base say one frame should hold.
#[derive(Default, Clone, Copy)]
struct Want {
    ty: Option<PageType>,
    count: u32,
    refs: u32,
    linear: i32,
}

/// The references found so far, per frame.
type Wants = HashMap<Mfn, Want>;

/// Count one reference to `m` (a typed one if `ty`); a frame referenced as two types is
/// an error, `why` says where the reference is.
fn add(
    want: &mut Wants,
    m: Mfn,
    ty: Option<PageType>,
    why: &dyn Fn() -> String,
) -> Result<(), String> {
    let w = want.entry(m).or_default();
    if let Some(ty) = ty {
        match w.ty {
            Some(t) if t != ty => {
                return Err(format!(
                    "mfn {m:#x} referenced as {t:?} and as {ty:?} ({})",
                    why()
                ))
            }
            _ => w.ty = Some(ty),
        }
        w.count += 1;
    }
    w.refs += 1;
    Ok(())
}

impl XenPvModel {
    /// Recompute every reference from the tables, pins and base, and compare with the
    /// counts kept; check no page-table frame is writable through any mapping and every
    /// entry of a validated table obeys Xen's rules.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut want = Wants::new();
        for (&mfn, f) in &self.frames {
            Self::check_frame_state(mfn, f)?;
            if f.xen_shared {
                want.entry(mfn).or_default().ty = Some(PageType::Writable);
                want.entry(mfn).or_default().count += 1;
            }
            if f.pinned {
                add(&mut want, mfn, Some(f.ty), &|| "pin".into())?;
            }
            if let (Some(level), true) = (f.ty.level(), f.count > 0) {
                self.count_table_refs(mfn, level, &mut want)?;
            }
        }
        if let Some(b) = self.base {
            add(&mut want, b, Some(PageType::L4), &|| "cr3".into())?;
        }
        self.compare_counts(&want)
    }

    /// A frame's own state is consistent: typed means validated, untyped means unpinned.
    fn check_frame_state(mfn: Mfn, f: &Frame) -> Result<(), String> {
        if f.count > 0 && !f.validated {
            return Err(format!("mfn {mfn:#x} typed {:?} but not validated", f.ty));
        }
        if f.count == 0 && (f.ty != PageType::None || f.pinned) {
            return Err(format!(
                "mfn {mfn:#x} count 0 but type {:?} pinned {}",
                f.ty, f.pinned
            ));
        }
        Ok(())
    }

    /// Check every present entry of the validated table `mfn` and count its references.
    fn count_table_refs(&self, mfn: Mfn, level: Level, want: &mut Wants) -> Result<(), String> {
        let t = self.table(mfn);
        for (slot, &e) in t.iter().enumerate() {
            if e & P == 0 {
                continue;
            }
            if level == Level::L4 && is_xen_l4_slot(slot) {
                continue;
            }
            let why = || format!("L{} mfn {mfn:#x}[{slot}] = {e:#x}", level as u8);
            if e != adjust(level, e) {
                return Err(format!("{} not as Xen stores it", why()));
            }
            if level == Level::L1 {
                self.count_l1_entry(e, want, &why)?;
            } else {
                self.count_pde(mfn, level, e, want, &why)?;
            }
        }
        Ok(())
    }

    /// An L1 entry: allowed flags, a frame the domain may map, a writable ref if RW.
    fn count_l1_entry(
        &self,
        e: u64,
        want: &mut Wants,
        why: &dyn Fn() -> String,
    ) -> Result<(), String> {
        let disallow = if self.io_caps {
            L1_DISALLOW_IO
        } else {
            L1_DISALLOW
        };
        if e & disallow != 0 {
            return Err(format!("{}: disallowed flags", why()));
        }
        let target = frame(e);
        match self.owner(target) {
            Owner::Domain | Owner::XenShared => add(
                want,
                target,
                (e & RW != 0).then_some(PageType::Writable),
                why,
            ),
            Owner::Io if self.io_caps => Ok(()),
            o => Err(format!("{}: maps a {o:?} frame", why())),
        }
    }

    /// An L2..L4 entry of table `mfn`: allowed flags, read-only self and linear maps, and
    /// a typed reference to the table below.
    fn count_pde(
        &self,
        mfn: Mfn,
        level: Level,
        e: u64,
        want: &mut Wants,
        why: &dyn Fn() -> String,
    ) -> Result<(), String> {
        if e & PDE_DISALLOW != 0 {
            return Err(format!("{}: disallowed flags", why()));
        }
        let target = frame(e);
        if target == mfn {
            if e & RW != 0 {
                return Err(format!("{}: writable self map", why()));
            }
            return Ok(());
        }
        if !matches!(self.owner(target), Owner::Domain) {
            return Err(format!("{}: points at a frame not the domain's", why()));
        }
        let tt = self.frames[&target].ty;
        if tt == PageType::table(level) {
            if e & RW != 0 {
                return Err(format!("{}: writable linear entry", why()));
            }
            want.entry(mfn).or_default().linear += 1;
            want.entry(target).or_default().linear -= 1;
            add(want, target, Some(tt), why)
        } else {
            let below = PageType::table(level.below().expect("L2+"));
            add(want, target, Some(below), why)
        }
    }

    /// The counts kept equal the references found, frame by frame, and nothing refers to
    /// a frame that is not the domain's.
    fn compare_counts(&self, want: &Wants) -> Result<(), String> {
        for (&mfn, f) in &self.frames {
            let w = want.get(&mfn).copied().unwrap_or_default();
            let ty = if w.count > 0 {
                w.ty.unwrap_or(PageType::None)
            } else {
                PageType::None
            };
            if f.count != w.count || f.ty != ty {
                return Err(format!(
                    "mfn {mfn:#x}: kept type {:?} count {} but references say {ty:?} count {}",
                    f.ty, f.count, w.count
                ));
            }
            if f.refs != w.refs {
                return Err(format!(
                    "mfn {mfn:#x}: kept {} general refs, references say {}",
                    f.refs, w.refs
                ));
            }
            if f.linear != w.linear {
                return Err(format!(
                    "mfn {mfn:#x}: linear count {} but tables say {}",
                    f.linear, w.linear
                ));
            }
        }
        for (&m, w) in want {
            if !self.frames.contains_key(&m) && w.refs > 0 {
                return Err(format!("reference to mfn {m:#x}, not the domain's"));
            }
        }
        Ok(())
    }
}
