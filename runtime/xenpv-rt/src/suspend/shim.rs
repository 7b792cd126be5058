//! Stand-ins for what the suspend sequence uses from paging (the p2m publisher, the
//! kept start_info page), until those land.
//! Each says what it lacks: a suspend that needs it is refused, visibly.

use crate::mm::Memory;

/// What start_info says after a resume (as `ResumeInfo` in the start_info parser).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResumeInfo {
    pub shared_info_maddr: u64,
    pub store_mfn: u64,
    pub store_evtchn: u32,
    pub console_mfn: u64,
    pub console_evtchn: u32,
}

/// The start_info page, kept at its PFN: not yet (the takeover frees it).
pub(crate) struct StartInfoPage;

impl StartInfoPage {
    pub(crate) fn mfn(&self) -> xenpv_abi::Mfn {
        xenpv_abi::Mfn(0)
    }
    pub(crate) fn rings_to_pfns(&mut self) {}
    pub(crate) fn rings_to_mfns(&mut self) {}
    pub(crate) fn resume_info(&mut self) -> Result<ResumeInfo, &'static str> {
        Err("no start_info page")
    }
}

/// The kept start_info page, or why there is none.
pub(crate) fn start_info_page(_mem: &mut Memory) -> Result<StartInfoPage, &'static str> {
    Err("start_info-page-not-kept")
}

/// Publish the p2m into shared_info (the toolstack reads it to save the guest).
pub(crate) fn publish_p2m(_mem: &mut Memory) -> Result<(), &'static str> {
    Err("p2m-not-published")
}

/// Refresh what the new host's memory size changes (`max_mfn`).
pub(crate) fn mm_resume_new(_mem: &mut Memory) {}
