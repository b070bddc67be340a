//! offthread works under any executor: smol's (`async-executor` with `futures-lite`'s
//! `block_on`, which is what `smol::block_on` is), besides tokio and `futures` tested
//! elsewhere. Nothing in offthread knows which executor polls it.

use offthread::offload;

#[offload]
fn square(x: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(1));
    x * x
}

#[test]
fn calls_complete_under_smols_executor() {
    let ex = async_executor::Executor::new();
    let total = futures_lite::future::block_on(ex.run(async {
        let tasks: Vec<_> = (0..32u64).map(|i| ex.spawn(square(i))).collect();
        let mut total = 0;
        for t in tasks {
            total += t.await;
        }
        total
    }));
    assert_eq!(total, (0..32u64).map(|i| i * i).sum::<u64>());
}

#[test]
fn a_pool_call_and_its_checked_form_under_smols_block_on() {
    let pool = offthread::Pool::builder().name("smol").build();
    let name = futures_lite::future::block_on(
        pool.spawn(|| std::thread::current().name().unwrap().to_owned()),
    );
    assert!(name.starts_with("smol-"));
    let err = futures_lite::future::block_on(pool.spawn(|| -> u8 { panic!("x") }).checked());
    assert!(err.unwrap_err().is_panic());
}
