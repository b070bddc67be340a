//! trybuild compile-fail and compile-pass cases of `#[offload]`, kept in a crate of their own so that trybuild builds only `offthread`, not the heavy dev-dependencies of the root package.
