//! Ring set-up and the start-up check behind `reactor.backend = "auto"`.

use std::io;

use io_uring::{IoUring, Probe, opcode};

use super::bufring::BufRing;

/// Builds a ring for the calling thread: `SINGLE_ISSUER` (only this thread submits,
/// which lets the kernel skip locking) and `DEFER_TASKRUN` (completion work runs only
/// when this thread waits, in batches, instead of interrupting it).
pub(crate) fn build_ring(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all()
        .setup_cqsize(entries.saturating_mul(4))
        .build(entries)
}

/// Whether this kernel has everything the io_uring backend uses; `Err` says what is
/// missing.
pub(crate) fn probe() -> Result<(), String> {
    let ring = build_ring(8)
        .map_err(|e| format!("io_uring setup with SINGLE_ISSUER|DEFER_TASKRUN failed: {e}"))?;
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| format!("io_uring opcode probe failed: {e}"))?;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "ACCEPT"),
        (opcode::RecvMulti::CODE, "RECV"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::Read::CODE, "READ"),
        (opcode::AsyncCancel2::CODE, "ASYNC_CANCEL"),
    ] {
        if !p.is_supported(code) {
            return Err(format!("io_uring lacks opcode {name}"));
        }
    }
    let bufs = BufRing::new(2, 1024, 2).map_err(|e| e.to_string())?;
    // SAFETY: the ring memory lives until `free` below, which runs after the group is
    // unregistered (or, if unregistering fails, after the whole ring is dropped).
    let reg = unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.ring_addr(), 2, 0, 0)
    };
    let unreg = reg
        .as_ref()
        .ok()
        .map(|()| ring.submitter().unregister_buf_ring(0));
    drop(ring);
    // SAFETY: the ring is destroyed and no request was ever submitted to it, so the
    // kernel holds no reference to this memory.
    unsafe { bufs.free() };
    reg.map_err(|e| format!("io_uring provided-buffer rings unsupported: {e}"))?;
    if let Some(Err(e)) = unreg {
        return Err(format!("io_uring buffer ring unregister failed: {e}"));
    }
    // Multishot accept (5.19) and multishot recv (6.0) predate DEFER_TASKRUN (6.1),
    // so a kernel that took the set-up flags has them.
    Ok(())
}
