//! The outbound client's reading of a platform's answer (`engine::h1`): any bytes, arriving in
//! any pieces, give a head or an error and then a body or an error, never a panic; a body is
//! never longer than the bytes it came from, and a chunked body ends only where its framing does.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokenwarden_engine::h1::{self, Decoded, Framing};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let piece = usize::from(flags >> 1).max(1);
    let mut pieces = rest.chunks(piece);
    let mut buf = BytesMut::new();
    let head = loop {
        match h1::parse_head(&mut buf, head_request) {
            Ok(Some(head)) => break head,
            Ok(None) => match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return,
            },
            Err(_) => return,
        }
    };
    assert!((200..=999).contains(&head.status.as_u16()), "interim answers are skipped");
    if head_request || matches!(head.status.as_u16(), 204 | 304) {
        assert_eq!(head.framing, Framing::Empty);
    }
    if head.framing == Framing::Close {
        assert!(!head.reusable);
    }
    if head.framing != Framing::Chunked {
        return;
    }
    let mut chunked = h1::Chunked::default();
    let mut body = 0usize;
    loop {
        match chunked.decode(&mut buf) {
            Ok(Decoded::Data(d)) => {
                assert!(!d.is_empty());
                body += d.len();
                assert!(body <= rest.len());
            }
            Ok(Decoded::End) => {
                assert!(chunked.is_done());
                return;
            }
            Ok(Decoded::NeedMore) => match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return,
            },
            Err(_) => return,
        }
    }
});
