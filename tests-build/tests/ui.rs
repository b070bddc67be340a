//! The compile errors of `#[offload]` (`tests/ui`, each `.stderr` checked in and read) and the
//! signatures that must compile (`tests/pass`). Regenerate with `TRYBUILD=overwrite`, then
//! read every changed `.stderr` before committing: the span must land on the user's token and
//! the message must say what to do.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("../tests/ui/*.rs");
    t.pass("../tests/pass/*.rs");
}
