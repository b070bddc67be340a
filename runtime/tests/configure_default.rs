//! `configure_default` before first use replaces the default pool; bad settings and late
//! calls are errors. A test binary of its own: the default pool is process-wide.

#[test]
fn configure_default_before_first_use_then_never_again() {
    let bad =
        offthread_runtime::configure_default(offthread_runtime::Pool::builder().max_threads(0));
    assert!(bad.unwrap_err().to_string().contains("max_threads(0)"));

    offthread_runtime::configure_default(
        offthread_runtime::Pool::builder()
            .name("custom")
            .max_threads(2),
    )
    .unwrap();
    let name = futures::executor::block_on(offthread_runtime::spawn(|| {
        std::thread::current().name().unwrap().to_owned()
    }));
    assert!(name.starts_with("custom-"), "{name}");

    let again = offthread_runtime::configure_default(offthread_runtime::Pool::builder());
    assert!(again.is_err());
}
