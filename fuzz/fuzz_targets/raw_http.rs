//! The `curl -i` reader behind `diagnose`: any bytes parse or are refused with a line number,
//! the body is the input's own tail, and what it read prints back to text that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenwarden_core::raw_http::{self, RawHttpError};

fuzz_target!(|data: &[u8]| {
    match raw_http::parse(data) {
        Ok(r) => {
            assert!((100..=999).contains(&r.status));
            assert!(data.ends_with(&r.body), "the body is the input's tail, untouched");
            for (name, value) in &r.headers {
                assert!(!name.contains('\n') && !value.contains('\n'));
                assert!(!name.contains(':'), "a name ends at the first colon");
            }
            // Printed back as HTTP/1.1, it reads the same.
            let mut text = format!("HTTP/1.1 {}\r\n", r.status).into_bytes();
            for (name, value) in &r.headers {
                text.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            text.extend_from_slice(b"\r\n");
            text.extend_from_slice(&r.body);
            let again = raw_http::parse(&text).expect("a printed response parses");
            assert_eq!(again, r);
        }
        Err(RawHttpError::Empty) => {}
        Err(RawHttpError::NoStatusLine { line, start } | RawHttpError::BadHeader { line, start }) => {
            assert!(line >= 1);
            assert!(start.chars().count() <= 40, "the error quotes at most 40 bytes");
        }
    }
});
