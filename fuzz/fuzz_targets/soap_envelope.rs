//! The SOAP envelope filler behind the proxy's `[api.soap]` calls: any bytes are filled or refused
//! with words, never a panic; a filled envelope holds the escaped token once per header entry,
//! and filling it again changes nothing (the header entries are found again where they were put).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenwarden_core::soap::{self, Entry};

const TOKEN: Entry<'static> = Entry {
    name: "AuthenticationToken",
    value: "tok<&>\"'",
    replaces: true,
};
const OTHERS: [Entry<'static>; 2] = [
    Entry {
        name: "DeveloperToken",
        value: "dev&",
        replaces: true,
    },
    Entry {
        name: "CustomerId",
        value: "42",
        replaces: false,
    },
];

fuzz_target!(|data: &[u8]| {
    let Ok(once) = soap::fill(data, TOKEN, &OTHERS) else {
        return;
    };
    let text = std::str::from_utf8(&once).expect("UTF-8 in, UTF-8 out");
    assert!(text.contains("tok&lt;&amp;&gt;&quot;&apos;"), "the token is written, escaped");
    let twice = soap::fill(&once, TOKEN, &OTHERS).expect("a filled envelope fills again");
    assert_eq!(once, twice, "filling is idempotent");
});
