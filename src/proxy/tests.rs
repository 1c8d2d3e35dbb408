//! Unit tests and properties of the PROXY header parser, the CIDR lists and the
//! encoder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::*;

const MAX: usize = 1024;

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((a, port))
}

fn proxied(source: SocketAddr, destination: SocketAddr) -> ProxyHeader {
    ProxyHeader::Proxied {
        source,
        destination,
    }
}

/// Feeds `bytes` one more byte at a time, as a socket might deliver them; returns
/// the first answer that is not "need more".
fn fed_bytewise(bytes: &[u8]) -> Result<Step, ProxyError> {
    for n in 0..=bytes.len() {
        match parse(&bytes[..n], MAX)? {
            Step::NeedMore => {}
            done => return Ok(done),
        }
    }
    Ok(Step::NeedMore)
}

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nHELLO";
    assert_eq!(
        parse(h, MAX),
        Ok(Step::Done {
            header: proxied(v4([192, 0, 2, 7], 56324), v4([198, 51, 100, 1], 443)),
            len: h.len() - 5,
        })
    );
    let h = b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
    let Ok(Step::Done { header, len }) = parse(h, MAX) else {
        panic!("{:?}", parse(h, MAX));
    };
    assert_eq!(len, h.len());
    assert_eq!(
        header.source(),
        Some(SocketAddr::new("2001:db8::1".parse().unwrap(), 1))
    );
    for h in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n",
    ] {
        assert_eq!(
            parse(h, MAX),
            Ok(Step::Done {
                header: ProxyHeader::Unknown,
                len: h.len()
            })
        );
    }
}

#[test]
fn v1_errors_are_typed() {
    let cases: &[(&[u8], ProxyError)] = &[
        (b"GET / HTTP/1.1\r\n", ProxyError::Signature),
        (b"PROXZ", ProxyError::Signature),
        (
            b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
            ProxyError::V1Syntax("protocol"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
            ProxyError::V1Syntax("field count"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
            ProxyError::V1Syntax("field count"),
        ),
        (
            b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n",
            ProxyError::V1Syntax("field count"),
        ),
        (
            b"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n",
            ProxyError::V1Syntax("address"),
        ),
        (
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            ProxyError::V1Syntax("address"),
        ),
        (
            b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
            ProxyError::V1Syntax("address"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
            ProxyError::V1Syntax("port"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
            ProxyError::V1Syntax("port"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n",
            ProxyError::V1Syntax("port"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX",
            ProxyError::V1Syntax("CR without LF"),
        ),
        (b"PROXY UNKNOWNX\r\n", ProxyError::V1Syntax("protocol")),
        // Found by fuzz `proxy_header` (corpus/proxy_header/seed-regression-lone-cr):
        // accepted whole, refused when the read ended after the lone CR.
        (
            b"PROXY UNKNOWN /\r\x04\x00\r\n",
            ProxyError::V1Syntax("CR without LF"),
        ),
        (
            b"PROXY UNKNOWN /\r\x04\x00\r",
            ProxyError::V1Syntax("CR without LF"),
        ),
        (b"PROXY TCP4 \xff\r\n", ProxyError::V1Syntax("not ASCII")),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            parse(bytes, MAX),
            Err(*want),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
    assert_eq!(parse(&long, MAX), Err(ProxyError::V1TooLong));
    // 107 bytes with the CRLF is the most there is.
    let mut fits = b"PROXY UNKNOWN ".to_vec();
    fits.resize(105, b'x');
    fits.extend_from_slice(b"\r\n");
    assert_eq!(fits.len(), MAX_V1_BYTES);
    assert!(matches!(parse(&fits, MAX), Ok(Step::Done { len: 107, .. })));
}

#[test]
fn v2_inet_inet6_local_unspec_and_tlvs() {
    let h = proxied(v4([10, 1, 2, 3], 40000), v4([10, 0, 0, 1], 7700));
    let bytes = encode_v2(&h, &[(0x04, b""), (0xEA, b"vpce-123")]);
    assert_eq!(
        parse(&[bytes.as_slice(), b"rest"].concat(), MAX),
        Ok(Step::Done {
            header: h,
            len: bytes.len()
        })
    );
    let h6 = proxied(
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
            1,
        ),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 2),
    );
    assert!(
        matches!(parse(&encode_v2(&h6, &[]), MAX), Ok(Step::Done { header, .. }) if header == h6)
    );
    let local = encode_v2(&ProxyHeader::Local, &[]);
    assert_eq!(
        parse(&local, MAX),
        Ok(Step::Done {
            header: ProxyHeader::Local,
            len: 16
        })
    );
    // LOCAL ignores whatever address block it has.
    let mut odd_local = V2_SIGNATURE.to_vec();
    odd_local.extend_from_slice(&[0x20, 0x12, 0, 3, 1, 2, 3]);
    assert!(matches!(
        parse(&odd_local, MAX),
        Ok(Step::Done {
            header: ProxyHeader::Local,
            len: 19
        })
    ));
    let unspec = encode_v2(&ProxyHeader::Unknown, &[]);
    assert!(matches!(
        parse(&unspec, MAX),
        Ok(Step::Done {
            header: ProxyHeader::Unknown,
            ..
        })
    ));
}

#[test]
fn v2_errors_are_typed() {
    let good = encode_v2(&proxied(v4([1, 2, 3, 4], 1), v4([5, 6, 7, 8], 2)), &[]);
    let with = |at: usize, b: u8| {
        let mut v = good.clone();
        v[at] = b;
        v
    };
    assert_eq!(parse(&with(3, b'X'), MAX), Err(ProxyError::Signature));
    assert_eq!(
        parse(
            &good[..5].iter().chain(b"x").copied().collect::<Vec<_>>(),
            MAX
        ),
        Err(ProxyError::Signature)
    );
    assert_eq!(parse(&with(12, 0x11), MAX), Err(ProxyError::V2Version(1)));
    assert_eq!(parse(&with(12, 0x22), MAX), Err(ProxyError::V2Command(2)));
    assert_eq!(parse(&with(13, 0x12), MAX), Err(ProxyError::V2Family(0x12)));
    assert_eq!(parse(&with(13, 0x41), MAX), Err(ProxyError::V2Family(0x41)));
    // An INET6 family on a 12-byte block.
    assert_eq!(parse(&with(13, 0x21), MAX), Err(ProxyError::V2Address(12)));
    // A TLV whose length runs past the header.
    let mut bad_tlv = good.clone();
    bad_tlv.extend_from_slice(&[0x04, 0, 9, 1]);
    bad_tlv[15] += 4;
    assert_eq!(parse(&bad_tlv, MAX), Err(ProxyError::V2Tlv));
    // Refused on its length field, before the body arrives.
    let mut huge = good[..14].to_vec();
    huge.extend_from_slice(&2000u16.to_be_bytes());
    assert_eq!(
        parse(&huge, MAX),
        Err(ProxyError::V2TooLarge {
            len: 2016,
            max: MAX
        })
    );
    // The bound never goes below what the specification asks receivers to take.
    let big = encode_v2(&ProxyHeader::Unknown, &[(0x04, &[0; 200])]);
    assert!(matches!(parse(&big, 0), Ok(Step::Done { .. })));
}

#[test]
fn errors_come_as_early_as_the_bytes_allow() {
    assert_eq!(parse(b"", MAX), Ok(Step::NeedMore));
    assert_eq!(parse(b"G", MAX), Err(ProxyError::Signature));
    assert_eq!(parse(b"\x16", MAX), Err(ProxyError::Signature));
    assert_eq!(parse(b"PRO", MAX), Ok(Step::NeedMore));
    assert_eq!(parse(b"\r\n\r\n\0", MAX), Ok(Step::NeedMore));
    assert_eq!(parse(b"\r\n\r\n\x01", MAX), Err(ProxyError::Signature));
}

#[test]
fn every_reason_has_a_label() {
    let all = [
        ProxyError::Signature,
        ProxyError::V1TooLong,
        ProxyError::V1Syntax("x"),
        ProxyError::V2Version(0),
        ProxyError::V2Command(0),
        ProxyError::V2Family(0),
        ProxyError::V2TooLarge { len: 0, max: 0 },
        ProxyError::V2Address(0),
        ProxyError::V2Tlv,
    ];
    let labels: Vec<_> = all.iter().map(ProxyError::reason).collect();
    assert_eq!(labels, ProxyError::REASONS);
}

#[test]
fn cidrs_parse_match_and_refuse_typos() {
    let net: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(net.contains(IpAddr::V4(Ipv4Addr::new(10, 255, 0, 1))));
    assert!(!net.contains(IpAddr::V4(Ipv4Addr::new(11, 0, 0, 1))));
    let one: Cidr = "127.0.0.1".parse().unwrap();
    assert_eq!(one.to_string(), "127.0.0.1/32");
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))));
    assert!(!all.contains(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    let v6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
    assert!(!v6.contains("2001:db9::1".parse().unwrap()));
    // A mapped address counts as its IPv4 form.
    let list = [net];
    assert!(trusted(
        &list,
        IpAddr::V6(Ipv4Addr::new(10, 1, 1, 1).to_ipv6_mapped())
    ));
    for (bad, want) in [
        ("10.0.0.0/33", "prefix"),
        ("10.0.0.0/", "prefix"),
        ("10.0.0.0/+8", "prefix"),
        ("::/129", "prefix"),
        ("10.0.0/8", "address"),
        ("example.com", "address"),
        ("10.1.0.0/8", "bits"),
    ] {
        let e = bad.parse::<Cidr>().unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
    ]
}

fn any_header() -> impl Strategy<Value = ProxyHeader> {
    prop_oneof![
        Just(ProxyHeader::Local),
        Just(ProxyHeader::Unknown),
        (any_addr(), any_addr()).prop_map(|(s, d)| {
            // Families agree, as in a real connection.
            let d = SocketAddr::new(
                match (s.ip(), d.ip()) {
                    (IpAddr::V4(_), IpAddr::V6(x)) => {
                        IpAddr::V4(Ipv4Addr::from(x.octets()[..4].try_into().unwrap_or([0; 4])))
                    }
                    (IpAddr::V6(_), IpAddr::V4(x)) => IpAddr::V6(x.to_ipv6_mapped()),
                    (_, d) => d,
                },
                d.port(),
            );
            proxied(s, d)
        }),
    ]
}

proptest! {
    /// v1 and v2 headers read back as written, fed whole or a byte at a time, and
    /// what follows them is left for the connection.
    #[test]
    fn headers_round_trip_at_any_split(
        header in any_header(),
        tlvs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..4),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
        split in any::<prop::sample::Index>(),
    ) {
        let tlvs: Vec<(u8, &[u8])> = tlvs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let v1_header = if header == ProxyHeader::Local { ProxyHeader::Unknown } else { header };
        for (bytes, want) in [(encode_v1(&header), v1_header), (encode_v2(&header, &tlvs), header)] {
            let len = bytes.len();
            prop_assert_eq!(fed_bytewise(&bytes), Ok(Step::Done { header: want, len }));
            let all = [bytes.as_slice(), &tail].concat();
            prop_assert_eq!(parse(&all, MAX), Ok(Step::Done { header: want, len }));
            // Any strict prefix needs more.
            let cut = split.index(len);
            prop_assert_eq!(parse(&all[..cut], MAX), Ok(Step::NeedMore));
        }
    }

    /// Arbitrary bytes never panic; a header found is no longer than the input, and
    /// the same bytes alone give the same header.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..2000) {
        check_any(&bytes, max);
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&bytes);
        check_any(&v2, max);
        let mut v1 = b"PROXY ".to_vec();
        v1.extend_from_slice(&bytes);
        check_any(&v1, max);
    }

    /// A corrupted byte in a valid header is either still a header, an error, or
    /// "need more" (a longer length field) — never a panic.
    #[test]
    fn corrupted_headers_fail_cleanly(header in any_header(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
        for mut bytes in [encode_v1(&header), encode_v2(&header, &[])] {
            let i = at.index(bytes.len());
            bytes[i] = b;
            check_any(&bytes, MAX);
        }
    }
}

/// What the fuzz target asserts, for the properties above.
fn check_any(bytes: &[u8], max: usize) {
    crate::proxy::fuzz_check(bytes, max);
}

#[test]
fn the_metric_labels_follow_the_reasons() {
    assert_eq!(crate::metrics::PROXY_HEADER_ERRORS[0], "timeout");
    assert_eq!(
        crate::metrics::PROXY_HEADER_ERRORS[1..],
        ProxyError::REASONS
    );
}
