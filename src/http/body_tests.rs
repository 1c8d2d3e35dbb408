use proptest::prelude::*;

use super::*;
use crate::http::head::{HeadLimits, parse};

fn request(head: &str) -> Request {
    let (req, _) = parse(head.as_bytes(), &HeadLimits::default())
        .expect("valid head")
        .expect("complete head");
    req
}

fn chunked() -> Request {
    request("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
}

fn length(n: usize) -> Request {
    request(&format!(
        "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: {n}\r\n\r\n"
    ))
}

/// Feeds `input` in pieces cut at `cuts`; returns the body and the bytes used.
fn read_in_pieces(
    req: &Request,
    max: usize,
    input: &[u8],
    cuts: &[usize],
) -> Result<(Vec<u8>, usize), BodyError> {
    let mut r = BodyReader::new(req, max)?;
    let mut at = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    for end in bounds {
        if end <= at {
            continue;
        }
        let fed = r.feed(&input[at..end])?;
        at += fed.consumed;
        if fed.done {
            return Ok((r.into_body(), at));
        }
        assert_eq!(
            at, end,
            "a reader that is not done uses everything it is given"
        );
    }
    assert!(r.is_done(), "input ended before the body");
    Ok((r.into_body(), at))
}

/// `body` in chunks of the given sizes (the last ones take what is left).
fn encode_chunked(body: &[u8], sizes: &[usize], ext: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = sizes.iter();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .map_or(rest.len(), |s| (*s).clamp(1, rest.len()));
        let (chunk, tail) = rest.split_at(n);
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if ext {
            out.extend_from_slice(b";name=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(b"0\r\n");
    if ext {
        out.extend_from_slice(b"Trailer-Field: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn content_length_body_ends_at_its_length_and_leaves_the_next_request() {
    let mut r = BodyReader::new(&length(5), 100).unwrap();
    let fed = r.feed(b"helloGET / HTTP/1.1").unwrap();
    assert_eq!(
        fed,
        Fed {
            consumed: 5,
            done: true
        }
    );
    assert_eq!(r.into_body(), b"hello");
}

#[test]
fn no_length_means_an_empty_body() {
    let req = request("GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut r = BodyReader::new(&req, 100).unwrap();
    assert!(r.is_done());
    assert_eq!(
        r.feed(b"GET").unwrap(),
        Fed {
            consumed: 0,
            done: true
        }
    );
}

#[test]
fn declared_length_past_the_limit_is_refused_before_reading() {
    let e = BodyReader::new(&length(101), 100).unwrap_err();
    assert_eq!(e, BodyError::TooLarge { max: 100 });
    assert_eq!(e.status(), 413);
    assert!(BodyReader::new(&length(100), 100).is_ok());
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let input = b"5;a=b\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    let mut r = BodyReader::new(&chunked(), 100).unwrap();
    let fed = r.feed(input).unwrap();
    assert!(fed.done);
    assert_eq!(&input[fed.consumed..], b"NEXT");
    assert_eq!(r.into_body(), b"hello world");
}

#[test]
fn chunked_sizes_are_checked() {
    for bad in [
        &b"g\r\n"[..],
        b"\r\n",
        b";x\r\n",
        b"5\n",
        b"1234567890abcdef0\r\n",
        b"5;ext\nhello",
    ] {
        let mut r = BodyReader::new(&chunked(), 1 << 20).unwrap();
        assert_eq!(r.feed(bad), Err(BodyError::BadChunkSize), "{bad:?}");
    }
    let long = [b';'; MAX_CHUNK_LINE];
    let mut r = BodyReader::new(&chunked(), 100).unwrap();
    r.feed(b"1").unwrap();
    assert_eq!(r.feed(&long), Err(BodyError::BadChunkSize));
}

#[test]
fn chunk_data_must_end_with_crlf() {
    let mut r = BodyReader::new(&chunked(), 100).unwrap();
    assert_eq!(r.feed(b"2\r\nabX"), Err(BodyError::BadChunkEnd));
    let mut r = BodyReader::new(&chunked(), 100).unwrap();
    assert_eq!(r.feed(b"2\r\nab\rX"), Err(BodyError::BadChunkEnd));
}

#[test]
fn chunked_body_past_the_limit_is_refused_at_the_chunk_size() {
    let mut r = BodyReader::new(&chunked(), 10).unwrap();
    assert_eq!(
        r.feed(b"6\r\nabcdef\r\n5\r\n"),
        Err(BodyError::TooLarge { max: 10 })
    );
    let mut r = BodyReader::new(&chunked(), 10).unwrap();
    assert!(
        r.feed(b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n")
            .unwrap()
            .done
    );
    assert_eq!(r.into_body(), b"abcdefghij");
}

#[test]
fn trailers_are_bounded_and_checked() {
    let mut r = BodyReader::new(&chunked(), 10).unwrap();
    let mut input = b"0\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'a', MAX_TRAILER_BYTES + 1));
    assert_eq!(r.feed(&input), Err(BodyError::BadTrailer));
    let mut r = BodyReader::new(&chunked(), 10).unwrap();
    assert_eq!(r.feed(b"0\r\nX: 1\n"), Err(BodyError::BadTrailer));
    let mut r = BodyReader::new(&chunked(), 10).unwrap();
    assert_eq!(r.feed(b"0\r\nX: \x001\r\n"), Err(BodyError::BadTrailer));
}

proptest! {
    /// A chunked body reads back the same whatever its chunk sizes, extensions,
    /// trailers, and wherever the input is split; what follows it is left alone.
    #[test]
    fn chunked_round_trips_at_any_split(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        sizes in proptest::collection::vec(1usize..64, 0..12),
        ext in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut input = encode_chunked(&body, &sizes, ext);
        let end = input.len();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (got, used) = read_in_pieces(&chunked(), 300, &input, &cuts).unwrap();
        prop_assert_eq!(got, body);
        prop_assert_eq!(used, end);
    }

    /// A `Content-Length` body reads back the same wherever the input is split.
    #[test]
    fn length_round_trips_at_any_split(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut input = body.clone();
        input.extend_from_slice(b"POST");
        let (got, used) = read_in_pieces(&length(body.len()), 300, &input, &cuts).unwrap();
        prop_assert_eq!(got, body.clone());
        prop_assert_eq!(used, body.len());
    }

    /// Arbitrary bytes never panic the chunked reader, never grow the body past the
    /// limit, and a reader that is not done used everything it was given.
    #[test]
    fn garbage_is_an_error_never_a_panic(
        input in proptest::collection::vec(any::<u8>(), 0..400),
        max in 0usize..64,
    ) {
        let mut r = BodyReader::new(&chunked(), max).unwrap();
        if let Ok(fed) = r.feed(&input) {
            prop_assert!(fed.done || fed.consumed == input.len());
            prop_assert!(r.into_body().len() <= max);
        }
    }
}
