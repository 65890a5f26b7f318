//! Client-side input: startup packet framing and parsing, then tagged frontend messages.
//! Property: whatever parses re-encodes to the same bytes; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dbwarden_wire_pg::fuzzing::frontend(data);
});
