// The expansion adds no warnings, even with every lint denied, in a crate whose `main` is
// its only user.
#![deny(warnings, missing_docs, unused_qualifications, unreachable_pub)]
//! A binary crate.

use offthread::offload;

#[derive(Clone)]
struct Account {
    balance: u64,
}

impl Account {
    #[offload]
    #[must_use]
    fn report(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.balance)
    }
}

#[offload(limit = 2, sync = sum_blocking)]
fn sum(values: &[u64], mut extra: u64, _unused: u8) -> u64 {
    extra += values.iter().sum::<u64>();
    extra
}

fn main() {
    let account = Account { balance: 5 };
    let report = futures::executor::block_on(account.report("$"));
    assert_eq!(report, "$5");
    assert_eq!(futures::executor::block_on(sum(&[1, 2], 3, 0)), 6);
    assert_eq!(sum_blocking(&[1], 1, 0), 2);
}
