//! Server-side input: tagged backend messages (round trip, DataRow rebuild), then the same bytes
//! driving a proxy session as an interleaving of client and server messages (no panic).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dbwarden_wire_pg::fuzzing::backend(data);
    dbwarden_wire_pg::fuzzing::proxy(data);
});
