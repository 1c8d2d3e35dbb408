//! Send requests in flight: each owns references to the bytes it sends (and, for
//! several buffers, the boxed `msghdr` and `iovec`s the kernel reads) until its final
//! completion, so neither the core dropping a connection's queue nor closing the
//! connection can free memory the kernel still reads.

use std::collections::VecDeque;

use bytes::Bytes;
use io_uring::opcode;
use io_uring::squeue;
use rustc_hash::FxHashMap;

use super::files::{Target, on_target};

/// Most queued buffers one `SENDMSG` carries.
pub(super) const MAX_SEND_IOVECS: usize = 32;
/// Spare records kept for reuse.
const MAX_SPARE: usize = 256;

/// The `msghdr` and `iovec`s of a multi-buffer send. Boxed: the kernel holds
/// pointers into it.
struct Vectored {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_SEND_IOVECS],
    bufs: Vec<Bytes>,
}

impl Vectored {
    fn new() -> Box<Self> {
        Box::new(Self {
            // SAFETY: `msghdr` is plain old data; all-zero is a valid empty header.
            hdr: unsafe { std::mem::zeroed() },
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_SEND_IOVECS],
            bufs: Vec::with_capacity(MAX_SEND_IOVECS),
        })
    }
}

/// The memory one send in flight reads.
enum Record {
    /// One buffer (`SEND`): the kernel reads the bytes, not this handle, so it can
    /// move freely.
    One(#[allow(dead_code, reason = "held, never read: keeps the bytes alive")] Bytes),
    /// Several (`SENDMSG`).
    Many(Box<Vectored>),
}

/// The send records of one ring, by request `user_data`.
#[derive(Default)]
pub(super) struct Sends {
    /// By `user_data`; Fx, not SipHash: a lookup per send completion, keys are ours.
    live: FxHashMap<u64, Record>,
    #[allow(clippy::vec_box, reason = "the kernel holds pointers into each box")]
    spare: Vec<Box<Vectored>>,
    /// Records displaced by a `user_data` collision (a 24-bit generation wrap while
    /// a send was in flight); kept until teardown because the kernel may still
    /// read them.
    orphans: Vec<Record>,
}

impl Sends {
    /// Builds the request sending up to [`MAX_SEND_IOVECS`] head buffers of `queue`
    /// on `file`, tagged `ud`; returns it with the number of buffers it covers.
    /// `dontwait`: `MSG_DONTWAIT`, so a socket with no room completes the request
    /// with `EAGAIN` at once instead of the kernel holding it (and the memory it
    /// reads) until there is room.
    pub fn build(
        &mut self,
        file: Target,
        ud: u64,
        queue: &VecDeque<Bytes>,
        dontwait: bool,
    ) -> (squeue::Entry, u8) {
        let msg_flags = if dontwait { libc::MSG_DONTWAIT } else { 0 };
        let (entry, rec, n) = match (queue.len(), queue.front()) {
            (1, Some(one)) => {
                let e = on_target!(file, f => opcode::Send::new(f, one.as_ptr(), one.len() as u32)
                    .flags(msg_flags)
                    .build());
                (e, Record::One(one.clone()), 1)
            }
            _ => {
                let mut v = self.spare.pop().unwrap_or_else(Vectored::new);
                v.bufs.clear();
                v.bufs.extend(queue.iter().take(MAX_SEND_IOVECS).cloned());
                let n = v.bufs.len();
                let Vectored { hdr, iov, bufs } = &mut *v;
                for (dst, src) in iov.iter_mut().zip(bufs.iter()) {
                    *dst = libc::iovec {
                        iov_base: src.as_ptr() as *mut libc::c_void,
                        iov_len: src.len(),
                    };
                }
                hdr.msg_iov = iov.as_mut_ptr();
                hdr.msg_iovlen = n as _;
                let e = on_target!(file, f => opcode::SendMsg::new(f, &v.hdr)
                    .flags(msg_flags as u32)
                    .build());
                (e, Record::Many(v), n)
            }
        };
        if let Some(old) = self.live.insert(ud, rec) {
            self.orphans.push(old);
        }
        (entry.user_data(ud), n as u8)
    }

    /// Whether a send tagged `ud` is in flight.
    pub fn in_flight(&self, ud: u64) -> bool {
        self.live.contains_key(&ud)
    }

    /// The send tagged `ud` posted its (only) completion: its memory is free again.
    pub fn finished(&mut self, ud: u64) {
        if let Some(Record::Many(mut v)) = self.live.remove(&ud) {
            v.bufs.clear();
            if self.spare.len() < MAX_SPARE {
                self.spare.push(v);
            }
        }
    }

    /// Teardown could not prove every request finished: leak what the kernel
    /// might still read.
    pub fn leak(&mut self) {
        for rec in self
            .live
            .drain()
            .map(|(_, r)| r)
            .chain(self.orphans.drain(..))
        {
            std::mem::forget(rec);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    #[test]
    fn records_cover_the_head_and_are_reused() {
        let mut s = Sends::default();
        let q: VecDeque<Bytes> = (0..40u8).map(|i| Bytes::from(vec![i; 3])).collect();
        let (_, n) = s.build(Target::Fd(3), 7, &q, false);
        assert_eq!(n as usize, MAX_SEND_IOVECS);
        assert!(s.in_flight(7));
        let Some(Record::Many(v)) = s.live.get(&7) else {
            panic!("several buffers go in one SENDMSG");
        };
        assert_eq!(v.hdr.msg_iovlen, MAX_SEND_IOVECS);
        assert_eq!(v.iov[1].iov_base as *const u8, q[1].as_ptr());
        s.finished(7);
        assert!(!s.in_flight(7));
        assert_eq!(s.spare.len(), 1);
        let one: VecDeque<Bytes> = [Bytes::from_static(b"x")].into();
        let (_, n) = s.build(Target::Fd(3), 8, &one, true);
        assert_eq!((n, s.spare.len()), (1, 1), "one buffer needs no header");
        assert!(matches!(s.live.get(&8), Some(Record::One(_))));
    }

    #[test]
    fn a_colliding_tag_keeps_the_old_record_alive() {
        let mut s = Sends::default();
        let q: VecDeque<Bytes> = [Bytes::from_static(b"ab")].into();
        s.build(Target::Fd(3), 9, &q, false);
        s.build(Target::Fd(3), 9, &q, false);
        assert_eq!(s.orphans.len(), 1);
        s.leak();
        assert!(s.live.is_empty() && s.orphans.is_empty());
    }
}
