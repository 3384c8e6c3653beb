//! The outbound client's reading of a platform's answer (`engine::h1`): any bytes, arriving in
//! any pieces, give a head or an error and then a body or an error, never a panic; a body is
//! never longer than the bytes it came from, a chunked body ends only where its framing does and
//! never holds more than a line while it waits, and a complete head is always seen to end.
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
        let before = buf.clone();
        match h1::parse_head(&mut buf, head_request) {
            Ok(Some(head)) => {
                // The client parses only once `head_ended` says a head may be complete: it must
                // never miss one.
                assert!(h1::head_ended(&before, 0), "a complete head was not seen to end");
                break head;
            }
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
            Ok(Decoded::NeedMore) => {
                // Waiting for more never holds more than one line's worth.
                assert!(buf.len() <= h1::MAX_LINE + 1, "{} bytes held", buf.len());
                match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return,
                }
            }
            Err(_) => return,
        }
    }
});
