//! The check both `orm` tests run, on a database of either backend: the orm example's data
//! layer (real Diesel queries through `#[offload]` with a `#[local]` connection), checked
//! against the same queries made directly. The including crate declares `db` and `workload`.

use std::sync::atomic::Ordering;

use crate::db::{self, Database};
use crate::workload::{self, Answer, Request, Tally};

const USERS: usize = 200;
const ORDERS: usize = 2_000;
const REQUESTS: usize = 300;

/// Seeds `seeded`, copies it twice beside it, points the data pool at one copy and checks
/// the offloaded functions against direct calls on the other; drops all three at the end.
/// Once per process: the data pool's database is set once.
pub async fn offloaded_queries_agree_with_direct_calls(seeded: &Database) {
    db::create_and_seed(seeded, USERS, ORDERS, |_, _| {}).expect("seed");
    let (offloaded, direct) = (seeded.sibling("offloaded"), seeded.sibling("direct"));
    db::copy_database(seeded, &offloaded).expect("copy");
    db::copy_database(seeded, &direct).expect("copy");
    db::use_database(&offloaded);
    let mut conn = db::connect(&direct);
    let opened = db::CONNECTIONS_OPENED.load(Ordering::SeqCst);

    // Each query, once, against the direct call on an identical database.
    let user = db::find_user(7).await.expect("find_user");
    assert_eq!(user, db::find_user_blocking(&mut conn, 7).unwrap());
    let user = user.expect("user 7 exists");
    assert_eq!(user.id, 7);
    assert!(user.email.ends_with(".7@example.com"), "{user:?}");
    assert_eq!(db::find_user(USERS as i64 + 1).await.unwrap(), None);

    let recent = db::recent_orders(1, 5).await.expect("recent_orders");
    assert_eq!(recent, db::recent_orders_blocking(&mut conn, 1, 5).unwrap());
    assert_eq!(recent.len(), 5, "user 1 is the busiest customer");
    let name = db::find_user_blocking(&mut conn, 1).unwrap().unwrap().name;
    assert!(recent.iter().all(|(o, n)| o.user_id == 1 && *n == name));
    assert!(recent
        .windows(2)
        .all(|w| w[0].0.placed_at >= w[1].0.placed_at));

    let (from, to) = (db::HISTORY_START, db::HISTORY_START + 30 * db::DAY);
    let top = db::top_customers(from, to, 3).await.expect("top_customers");
    assert_eq!(
        top,
        db::top_customers_blocking(&mut conn, from, to, 3).unwrap()
    );
    assert_eq!(top.len(), 3);
    assert!(top.windows(2).all(|w| w[0].spent_cents >= w[1].spent_cents));

    // The workload, all requests in flight at once, against the same requests in order.
    let requests = workload::requests(USERS, REQUESTS, 7);
    assert!(requests
        .iter()
        .any(|r| matches!(r, Request::PlaceOrder { .. })));
    let expected: Vec<Answer> = requests
        .iter()
        .map(|&r| workload::serve_blocking(&mut conn, r).expect("direct call"))
        .collect();
    let expected = Tally::new(&expected, db::fingerprint(&mut conn).unwrap());

    let calls: Vec<_> = requests
        .iter()
        .map(|&r| tokio::spawn(workload::serve_offloaded(r)))
        .collect();
    let mut answers = Vec::with_capacity(calls.len());
    for call in calls {
        answers.push(call.await.unwrap().expect("offloaded call"));
    }
    // 304 queries, and one connection per worker, not per call.
    let by_workers = db::CONNECTIONS_OPENED.load(Ordering::SeqCst) - opened;
    assert!(
        (1..=db::data_threads()).contains(&by_workers),
        "{by_workers} connections opened"
    );
    let fingerprint = db::fingerprint(&mut db::connect(&offloaded)).unwrap();
    let got = Tally::new(&answers, fingerprint);
    assert_eq!(expected.differences(&got), Vec::<String>::new());

    let m = db::DATA.metrics();
    assert!(m.threads >= 1 && m.threads <= db::data_threads(), "{m:?}");
    assert_eq!(m.submitted, REQUESTS as u64 + 4);
    assert_eq!((m.completed, m.panicked), (m.submitted, 0));

    // Concurrent writes to one user (`limit = 1`, a transaction each) all land, and each
    // sees the count its predecessor left.
    let before = db::find_user(16).await.unwrap().unwrap().order_count;
    let writes: Vec<_> = (0..40)
        .map(|i| tokio::spawn(db::place_order(16, 100 + i, db::HISTORY_START - 1)))
        .collect();
    let mut counts = Vec::new();
    for write in writes {
        counts.push(write.await.unwrap().expect("place_order").order_count);
    }
    counts.sort_unstable();
    assert_eq!(counts, (before + 1..=before + 40).collect::<Vec<_>>());
    assert_eq!(
        db::find_user(16).await.unwrap().unwrap().order_count,
        before + 40
    );

    drop(conn);
    for database in [&offloaded, &direct, seeded] {
        db::drop_database(database).expect("drop");
    }
}
