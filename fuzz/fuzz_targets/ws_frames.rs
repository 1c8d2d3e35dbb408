//! Fuzz target for the WebSocket receive state machine (`switchboard::ws::WsState`).
//!
//! The first byte picks the message limit and how the rest is cut into reads: bits
//! 7-6 `max_message` (0 = 1 MiB, 1 = 125, 2 = 0, 3 = 4096), bits 5-0 `k`: reads of `k`
//! bytes (0: the whole stream in one read). Reads are fed the way the reactor does:
//! the unconsumed rest (a partial frame) is kept and fed again with the next read.
//! The target asserts that:
//! - `consumed` never passes the end of the input, and what stays unconsumed is less
//!   than one whole frame (feeding it again alone consumes nothing);
//! - the sink calls and the end (open with the same rest, closed with the same code,
//!   or the same error) are the same for the cut stream and for one read of it;
//! - every complete text message is valid UTF-8, no message passes `max_message`, every
//!   control frame the endpoint sends is a whole server frame of at most 127 bytes;
//! - every error's close code is 1002, 1007 or 1009.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::ws::{Fed, WsError, WsLimits, WsSink, WsState};

const MAX_MESSAGE: [u32; 4] = [1 << 20, 125, 0, 4096];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Data(bool, Vec<u8>, bool),
    Control(Vec<u8>),
}

#[derive(Default)]
struct Sink {
    calls: Vec<Call>,
    message: Vec<u8>,
    max: u32,
}

impl WsSink for Sink {
    fn data(&mut self, text: bool, chunk: &[u8], fin: bool) -> Result<(), u16> {
        self.message.extend_from_slice(chunk);
        assert!(
            self.message.len() <= self.max as usize,
            "message past the limit"
        );
        if fin {
            if text {
                assert!(
                    std::str::from_utf8(&self.message).is_ok(),
                    "invalid text delivered"
                );
            }
            self.message.clear();
        }
        self.calls.push(Call::Data(text, chunk.to_vec(), fin));
        Ok(())
    }
    fn control(&mut self, frame: bytes::Bytes) {
        assert!(
            frame.len() >= 2 && frame.len() <= 127,
            "control frame of {}",
            frame.len()
        );
        assert_eq!(
            usize::from(frame[1]),
            frame.len() - 2,
            "control frame length"
        );
        self.calls.push(Call::Control(frame.to_vec()));
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Open(Vec<u8>),
    Closed(u16),
    Failed(WsError),
}

fn run(reads: &[&[u8]], limits: &WsLimits) -> (Vec<Call>, End) {
    let mut state = WsState::default();
    let mut sink = Sink {
        max: limits.max_message,
        ..Sink::default()
    };
    let mut scratch = Vec::new();
    let mut spill = Vec::new();
    for read in reads {
        spill.extend_from_slice(read);
        match state.feed(&spill, limits, &mut scratch, &mut sink) {
            Ok(Fed::More { consumed }) => {
                assert!(consumed <= spill.len());
                spill.drain(..consumed);
                // The rest is a partial frame: alone it yields nothing.
                let mut probe = state;
                let mut quiet = Sink {
                    max: limits.max_message,
                    ..Sink::default()
                };
                if let Ok(Fed::More { consumed }) =
                    probe.feed(&spill, limits, &mut scratch, &mut quiet)
                {
                    assert_eq!(consumed, 0, "a whole frame was left unconsumed");
                }
            }
            Ok(Fed::Closed { consumed, code }) => {
                assert!(consumed <= spill.len());
                return (sink.calls, End::Closed(code));
            }
            Err(e) => {
                assert!([1002, 1007, 1009].contains(&e.close_code()), "{e:?}");
                return (sink.calls, End::Failed(e));
            }
        }
    }
    (sink.calls, End::Open(spill))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, stream)) = data.split_first() else {
        return;
    };
    let limits = WsLimits {
        max_message: MAX_MESSAGE[usize::from(pattern >> 6)],
    };
    let k = usize::from(pattern & 0x3f);
    let reads: Vec<&[u8]> = if k == 0 {
        vec![stream]
    } else {
        stream.chunks(k).collect()
    };
    let cut = run(&reads, &limits);
    let whole = run(&[stream], &limits);
    assert_eq!(cut, whole, "cut and whole streams disagree");
});
