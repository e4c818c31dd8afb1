//! Sender phone numbers: `normalize_e164` (libphonenumber's data through the `phonenumber` crate).

use keyward_core::phone::{is_e164_shaped, normalize_e164};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for input in std::iter::once(text.as_ref()).chain(text.lines()) {
        if let Some(number) = normalize_e164(input) {
            // What is stored is E.164 and normalizes to itself.
            assert!(is_e164_shaped(&number), "{input:?} gave {number:?}");
            assert_eq!(normalize_e164(&number).as_deref(), Some(number.as_str()), "{input:?}");
        }
    }
}
