//! A bounded, sans-IO reader of HTTP/1.1 request bodies: `Content-Length` and
//! `Transfer-Encoding: chunked` (RFC 9112 sections 6 and 7.1).
//!
//! [`BodyReader::feed`] takes whatever bytes arrived after the head (in as many calls
//! as they arrive in) and says how many it used and whether the body is complete;
//! bytes past the body belong to the next request. The body is collected into one
//! buffer that never grows past `max_bytes`: a declared length past it is refused
//! before a byte of the body is read, a chunked body as soon as its chunks pass it.
//! Chunk-size lines and trailers are bounded too, so no input makes the reader hold
//! more than `max_bytes` plus a few kilobytes. Chunk extensions and trailer fields
//! are read and dropped (nothing the gateway serves uses them).
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::head::Request;

/// Longest chunk-size line (size, extensions, CRLF) accepted.
pub const MAX_CHUNK_LINE: usize = 1024;
/// Most bytes of trailer fields after the last chunk.
pub const MAX_TRAILER_BYTES: usize = 4096;

/// Why a body cannot be read; [`BodyError::status`] is the status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is (or says it will be) larger than the limit (413).
    #[error("request body larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// A chunk-size line is not hexadecimal digits, is too long, or overflows (400).
    #[error("bad chunk size line")]
    BadChunkSize,
    /// A chunk's data is not followed by CRLF (400).
    #[error("chunk data not followed by CRLF")]
    BadChunkEnd,
    /// The trailer section is longer than [`MAX_TRAILER_BYTES`] or malformed (400).
    #[error("bad or oversized trailer section")]
    BadTrailer,
}

impl BodyError {
    /// The HTTP status that answers this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            Self::BadChunkSize | Self::BadChunkEnd | Self::BadTrailer => 400,
        }
    }
}

/// What one [`BodyReader::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input that belong to the body (the rest is the next request's).
    pub consumed: usize,
    /// The body is complete: [`BodyReader::into_body`] has it.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `Content-Length` bytes still to come.
    Length {
        left: u64,
    },
    /// Reading a chunk-size line: the size so far, digits seen, inside the
    /// extensions, a CR seen, bytes of the line so far.
    Size {
        size: u64,
        digits: u8,
        ext: bool,
        cr: bool,
        line: usize,
    },
    /// Chunk data still to come.
    Data {
        left: u64,
    },
    /// The CRLF after a chunk's data: how many of its two bytes were seen.
    DataEnd {
        seen: u8,
    },
    /// Trailer fields after the last chunk: bytes of the current line, a CR seen,
    /// bytes of the section so far.
    Trailer {
        line: usize,
        cr: bool,
        total: usize,
    },
    Done,
}

/// Reads one request body. See the module documentation.
#[derive(Debug, Clone)]
pub struct BodyReader {
    step: Step,
    max: usize,
    body: Vec<u8>,
}

impl BodyReader {
    /// The reader for `req`'s body, at most `max_bytes` long. A request without
    /// `Content-Length` or chunked coding has an empty body (RFC 9112 6.3: requests
    /// are never delimited by the end of the connection). A declared length past the
    /// limit is refused now.
    pub fn new(req: &Request, max_bytes: usize) -> Result<Self, BodyError> {
        let step = if req.chunked {
            Step::Size {
                size: 0,
                digits: 0,
                ext: false,
                cr: false,
                line: 0,
            }
        } else {
            match req.content_length {
                Some(n) if n > max_bytes as u64 => {
                    return Err(BodyError::TooLarge { max: max_bytes });
                }
                Some(n) if n > 0 => Step::Length { left: n },
                _ => Step::Done,
            }
        };
        let expect = match step {
            Step::Length { left } => usize::try_from(left).unwrap_or(max_bytes),
            _ => 0,
        };
        Ok(Self {
            step,
            max: max_bytes,
            body: Vec::with_capacity(expect),
        })
    }

    /// The body is complete.
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// Bytes of the body so far.
    pub fn received(&self) -> usize {
        self.body.len()
    }

    /// The body so far (all of it once done).
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// Takes bytes that follow what was fed before; see [`Fed`].
    pub fn feed(&mut self, data: &[u8]) -> Result<Fed, BodyError> {
        let mut at = 0usize;
        while at < data.len() && self.step != Step::Done {
            let rest = data.get(at..).unwrap_or_default();
            at = at.saturating_add(self.advance(rest)?);
        }
        Ok(Fed {
            consumed: at,
            done: self.step == Step::Done,
        })
    }

    /// One step over the start of `data` (not empty): returns the bytes used (≥ 1).
    fn advance(&mut self, data: &[u8]) -> Result<usize, BodyError> {
        match self.step {
            Step::Done => Ok(0),
            Step::Length { left } | Step::Data { left } => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                if self.body.len().saturating_add(take) > self.max {
                    return Err(BodyError::TooLarge { max: self.max });
                }
                self.body
                    .extend_from_slice(data.get(..take).unwrap_or_default());
                let left = left.saturating_sub(take as u64);
                self.step = match (self.step, left) {
                    (Step::Length { .. }, 0) => Step::Done,
                    (Step::Length { .. }, left) => Step::Length { left },
                    (_, 0) => Step::DataEnd { seen: 0 },
                    (_, left) => Step::Data { left },
                };
                Ok(take)
            }
            Step::DataEnd { seen } => {
                let want = if seen == 0 { b'\r' } else { b'\n' };
                if data.first() != Some(&want) {
                    return Err(BodyError::BadChunkEnd);
                }
                self.step = if seen == 0 {
                    Step::DataEnd { seen: 1 }
                } else {
                    Step::Size {
                        size: 0,
                        digits: 0,
                        ext: false,
                        cr: false,
                        line: 0,
                    }
                };
                Ok(1)
            }
            Step::Size {
                size,
                digits,
                ext,
                cr,
                line,
            } => {
                let b = data.first().copied().unwrap_or(0);
                let line = line.saturating_add(1);
                if line > MAX_CHUNK_LINE {
                    return Err(BodyError::BadChunkSize);
                }
                self.step = if cr {
                    if b != b'\n' || digits == 0 {
                        return Err(BodyError::BadChunkSize);
                    }
                    if size == 0 {
                        Step::Trailer {
                            line: 0,
                            cr: false,
                            total: 0,
                        }
                    } else {
                        if self.body.len() as u64 >= self.max as u64
                            || size > (self.max.saturating_sub(self.body.len())) as u64
                        {
                            return Err(BodyError::TooLarge { max: self.max });
                        }
                        Step::Data { left: size }
                    }
                } else if b == b'\r' {
                    Step::Size {
                        size,
                        digits,
                        ext,
                        cr: true,
                        line,
                    }
                } else if ext {
                    // Extensions are skipped, but stay on the line: no bare LF or
                    // control bytes inside them.
                    if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(BodyError::BadChunkSize);
                    }
                    Step::Size {
                        size,
                        digits,
                        ext,
                        cr,
                        line,
                    }
                } else if b == b';' || b == b' ' || b == b'\t' {
                    if digits == 0 {
                        return Err(BodyError::BadChunkSize);
                    }
                    Step::Size {
                        size,
                        digits,
                        ext: true,
                        cr,
                        line,
                    }
                } else {
                    let digit = (b as char).to_digit(16).ok_or(BodyError::BadChunkSize)?;
                    // 15 hex digits already pass any limit: refuse before overflow.
                    if digits >= 15 {
                        return Err(BodyError::BadChunkSize);
                    }
                    Step::Size {
                        size: size.saturating_mul(16).saturating_add(u64::from(digit)),
                        digits: digits.saturating_add(1),
                        ext,
                        cr,
                        line,
                    }
                };
                Ok(1)
            }
            Step::Trailer { line, cr, total } => {
                let b = data.first().copied().unwrap_or(0);
                let total = total.saturating_add(1);
                if total > MAX_TRAILER_BYTES {
                    return Err(BodyError::BadTrailer);
                }
                self.step = if cr {
                    if b != b'\n' {
                        return Err(BodyError::BadTrailer);
                    }
                    if line == 0 {
                        Step::Done
                    } else {
                        Step::Trailer {
                            line: 0,
                            cr: false,
                            total,
                        }
                    }
                } else if b == b'\r' {
                    Step::Trailer {
                        line,
                        cr: true,
                        total,
                    }
                } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                    return Err(BodyError::BadTrailer);
                } else {
                    Step::Trailer {
                        line: line.saturating_add(1),
                        cr: false,
                        total,
                    }
                };
                Ok(1)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
#[path = "body_tests.rs"]
mod tests;
