//! The ciphertext envelope (`0x01 ‖ len ‖ key id ‖ nonce ‖ ciphertext+tag`) and the key file:
//! any stored bytes are read or refused without a panic, and a header that decodes is the bytes it
//! came from; a sealed value opens at its place only, its layout is as documented, and a change of
//! any one bit refuses it; a key file that parses writes out to one that parses the same.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tokenwarden_store::crypto::{Keyring, MAX_KEY_ID_LEN, Place, stored_key_id};

#[derive(Debug, Arbitrary)]
enum Input {
    /// Bytes found in a column.
    Stored { bytes: Vec<u8>, row: String },
    /// A value we sealed, then one bit changed.
    Sealed {
        plaintext: Vec<u8>,
        table: String,
        column: String,
        row: String,
        older_key: bool,
        flip: u32,
    },
    /// A key file or environment value.
    KeyText(String),
}

fn ring() -> Keyring {
    Keyring::from_keys(vec![("k-old".into(), [7; 32]), ("k.2026_new".into(), [9; 32])])
        .expect("a valid keyring")
}

fuzz_target!(|input: Input| {
    match input {
        Input::Stored { bytes, row } => {
            let place = Place::new("token_sets", "access_token", &row);
            if let Some(id) = stored_key_id(&bytes) {
                assert_eq!(bytes[0], 1);
                assert_eq!(usize::from(bytes[1]), id.len());
                assert!((1..=MAX_KEY_ID_LEN).contains(&id.len()));
                assert_eq!(&bytes[2..2 + id.len()], id.as_bytes());
                assert!(bytes.len() >= 2 + id.len() + 12 + 16);
            }
            if let Ok(plain) = ring().open(&place, &bytes) {
                // Only a real ciphertext opens; it names a key we hold.
                let id = stored_key_id(&bytes).expect("an opened value has a header");
                assert!(ring().has(id));
                assert_eq!(bytes.len(), 2 + id.len() + 12 + plain.len() + 16);
            }
            let _ = ring().open_text(&place, &bytes);
        }
        Input::Sealed { plaintext, table, column, row, older_key, flip } => {
            let ring = if older_key {
                Keyring::single("k-old", [7; 32]).expect("valid")
            } else {
                ring()
            };
            let place = Place::new(&table, &column, &row);
            let sealed = ring.seal(&place, &plaintext).expect("sealing works");
            let id = ring.current_id();
            assert_eq!(stored_key_id(&sealed), Some(id));
            assert_eq!(sealed.len(), 2 + id.len() + 12 + plaintext.len() + 16);
            assert_eq!(&**ring.open(&place, &sealed).expect("opens where sealed"), &plaintext[..]);
            // Both keyrings hold k-old: a value sealed under it opens with the full ring too.
            assert_eq!(&**self::ring().open(&place, &sealed).expect("any holder opens"), &plaintext[..]);
            match ring.open_text(&place, &sealed) {
                Ok(s) => assert_eq!(s.expose().as_bytes(), &plaintext[..]),
                Err(_) => assert!(std::str::from_utf8(&plaintext).is_err()),
            }
            let elsewhere_row = format!("{row}x");
            let elsewhere = Place::new(&table, &column, &elsewhere_row);
            assert!(ring.open(&elsewhere, &sealed).is_err(), "opened at another row");
            let bit = flip as usize % (sealed.len() * 8);
            let mut changed = sealed.clone();
            changed[bit / 8] ^= 1 << (bit % 8);
            assert!(ring.open(&place, &changed).is_err(), "bit {bit} changed and it still opens");
        }
        Input::KeyText(text) => {
            if let Ok(ring) = Keyring::parse(&text) {
                let again = Keyring::parse(&ring.to_file_text()).expect("its own file text parses");
                assert_eq!(again.key_ids(), ring.key_ids());
                assert_eq!(again.current_id(), ring.current_id());
                // Same keys: what one seals, the other opens.
                let place = Place::new("t", "c", "r");
                let sealed = ring.seal(&place, b"v").expect("seals");
                assert_eq!(&**again.open(&place, &sealed).expect("opens"), b"v");
            }
        }
    }
});
