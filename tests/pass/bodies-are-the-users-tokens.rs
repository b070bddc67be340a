// Inner attributes stay inside the body (of the offloaded function and of its `sync` twin),
// `&T` parameters may be destructured, and a `#[local]` parameter may carry `#[cfg]`: all
// without a warning, with every lint denied.
#![deny(warnings, missing_docs, unused_qualifications, unreachable_pub)]
//! A binary crate.

use offthread::offload;
use std::sync::LazyLock;

#[derive(Clone)]
struct Point {
    x: i64,
    y: i64,
}

struct Conn {
    queries: u32,
}

static DB: LazyLock<offthread::Pool> = LazyLock::new(|| {
    offthread::Pool::builder()
        .max_threads(1)
        .worker_local(|| Conn { queries: 0 })
        .build()
});

#[offload(sync = total_blocking)]
fn total(values: &[i64]) -> i64 {
    #![allow(clippy::needless_range_loop, unused_variables)]
    let unused = 0;
    let mut sum = 0;
    for i in 0..values.len() {
        sum += values[i];
    }
    sum
}

#[offload]
fn norm(Point { x, y }: &Point, &(a, b): &(i64, i64)) -> i64 {
    x * x + y * y + a + b
}

#[offload(pool = DB)]
fn queries(#[cfg(not(miri))] #[local] conn: &mut Conn) -> u32 {
    #[cfg(not(miri))]
    {
        conn.queries += 1;
        conn.queries
    }
    #[cfg(miri)]
    0
}

// The `cfg` is off here: the function has no `#[local]` parameter and runs on any pool.
#[offload]
fn no_queries(#[cfg(miri)] #[local] conn: &mut Conn, n: u32) -> u32 {
    n
}

impl Point {
    #[offload]
    fn sum(&self) -> i64 {
        #![allow(unused_variables)]
        let unused = 1;
        self.x + self.y
    }
}

fn main() {
    futures::executor::block_on(async {
        assert_eq!(total(&[1, 2, 3]).await, 6);
        assert_eq!(total_blocking(&[1, 2]), 3);
        assert_eq!(norm(&Point { x: 1, y: 2 }, &(3, 4)).await, 12);
        assert_eq!(queries().await, 1);
        assert_eq!(no_queries(4).await, 4);
        assert_eq!(Point { x: 1, y: 2 }.sum().await, 3);
    });
}
