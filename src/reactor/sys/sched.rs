//! The scheduler slice of the message path's threads (`reactor.sched_slice_us`).
//!
//! Linux 6.12+ (EEVDF) lets a `SCHED_OTHER` thread ask for a shorter time slice through
//! `sched_setattr(2)`'s `sched_runtime`. A shorter slice means an earlier virtual
//! deadline, so the thread preempts on wakeup instead of waiting behind whatever runs
//! on the core (a load generator, a compiler, another service): readiness turns into a
//! read sooner, which is the tail latency of routing. It is not a priority: the thread
//! gets no more CPU than its fair share, only sooner and in shorter pieces. Older kernels
//! take the call and ignore the slice.

use std::io;

/// The kernel's bounds on a requested slice (`sched_setattr(2)`: 0.1 ms to 100 ms).
pub const MIN_US: u32 = 100;
/// See [`MIN_US`].
pub const MAX_US: u32 = 100_000;

/// Asks for a scheduler slice of `us` microseconds for the calling thread, keeping its
/// policy and nice value. `0` leaves the kernel's default and makes no call; a thread
/// under a policy other than `SCHED_OTHER`/`SCHED_BATCH` (set for the unit by the
/// operator) is left alone.
pub fn request_slice(us: u32) -> io::Result<()> {
    if us == 0 {
        return Ok(());
    }
    // SAFETY: sched_getscheduler takes a plain pid; 0 is the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy < 0 {
        return Err(io::Error::last_os_error());
    }
    // Only the fair policies have a slice; a policy the operator chose for the unit
    // (real-time, idle) is left as it is.
    if policy != libc::SCHED_OTHER && policy != libc::SCHED_BATCH {
        return Ok(());
    }
    let nice = current_nice()?;
    let attr = libc::sched_attr {
        size: u32::try_from(std::mem::size_of::<libc::sched_attr>()).unwrap_or(u32::MAX),
        sched_policy: u32::try_from(policy).unwrap_or(0),
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: u64::from(us.clamp(MIN_US, MAX_US)) * 1_000,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a fully initialised `sched_attr` whose `size` field is its own
    // size, it outlives the call, and the kernel only reads it; pid 0 is this thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &attr as *const libc::sched_attr,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// This thread's nice value (the attribute call sets it too, so it is passed on).
fn current_nice() -> io::Result<i32> {
    // getpriority can return -1 as a value: errno tells it from an error.
    errno_clear();
    // SAFETY: getpriority takes plain integers; PRIO_PROCESS with 0 is the caller
    // (on Linux, the calling thread).
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if nice == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error().unwrap_or(0) != 0 {
            return Err(e);
        }
    }
    Ok(nice)
}

fn errno_clear() {
    // SAFETY: __errno_location returns this thread's errno, valid for the thread's life.
    unsafe { *libc::__errno_location() = 0 };
}

/// Requests the slice for the calling thread; a failure is logged once per process.
pub fn apply(us: u32, thread: &str) {
    if us == 0 {
        return;
    }
    match request_slice(us) {
        Ok(()) => tracing::debug!(thread, slice_us = us, "scheduler slice requested"),
        Err(e) => {
            // Once per process: every thread would fail the same way (a seccomp
            // filter, an old kernel).
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    thread,
                    slice_us = us,
                    error = %e,
                    "could not request a scheduler slice (reactor.sched_slice_us); running \
                     with the kernel's default"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_makes_no_call_and_a_slice_is_accepted_on_this_kernel() {
        request_slice(0).unwrap();
        // The call itself works on any kernel with sched_setattr (3.14+); the slice
        // is honoured from 6.12. Run on a thread of its own: the slice stays with it.
        std::thread::spawn(|| request_slice(300).unwrap())
            .join()
            .unwrap();
    }

    #[test]
    fn a_batch_policy_is_kept_and_an_idle_one_left_alone() {
        std::thread::spawn(|| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: a valid sched_param for this thread (pid 0).
            let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
            assert_eq!(r, 0);
            request_slice(200).unwrap();
            // SAFETY: plain pid.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_BATCH);
            // SAFETY: as above.
            let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            assert_eq!(r, 0);
            request_slice(200).unwrap();
            // SAFETY: plain pid.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_nice_value_survives() {
        std::thread::spawn(|| {
            // SAFETY: plain integers; raises this test thread's nice only.
            let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) };
            assert_eq!(r, 0);
            request_slice(200).unwrap();
            assert_eq!(current_nice().unwrap(), 5);
        })
        .join()
        .unwrap();
    }
}
