//! The authorization callback's query: a deciding parameter (state, code, iss, error, the
//! provider's code parameters) is read only when it appears once, and what is read is exactly what
//! the query says, as another form parser decodes it.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use tokenwarden_core::callback::{self, Repeated};
use tokenwarden_fuzz::provider;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(selector), Ok(extra)) = (u.arbitrary::<u8>(), u.arbitrary::<Option<String>>()) else {
        return;
    };
    let mut code_params = provider(selector).spec.authorize.callback_code_params.clone();
    code_params.extend(extra);
    let raw = String::from_utf8_lossy(u.take_rest());
    let raw = (!raw.is_empty()).then_some(raw.as_ref());

    // What the query holds, counted independently.
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut first: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        *count.entry(k.to_string()).or_default() += 1;
        first.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    match callback::parse(raw, &code_params) {
        Ok(q) => {
            for (name, n) in &count {
                assert!(
                    *n == 1 || !callback::is_single(name, &code_params),
                    "{name:?} appears {n} times and was accepted"
                );
                assert_eq!(q.get(name), first.get(name).map(String::as_str));
            }
            let get = |k: &str| first.get(k).map(String::as_str);
            assert_eq!(q.state(), get("state").filter(|s| !s.is_empty()));
            assert_eq!(q.issuer(), get("iss"));
            assert_eq!(q.error(), get("error"));
            let code = q.code(&code_params);
            assert!(code.is_none_or(|c| !c.is_empty()));
            if let Some(c) = code {
                assert!(code_params.iter().any(|k| get(k) == Some(c)));
            }
        }
        Err(Repeated(name)) => {
            assert!(callback::is_single(&name, &code_params));
            assert!(count.get(&name).is_some_and(|n| *n >= 2), "{name:?} was not repeated");
        }
    }
});
