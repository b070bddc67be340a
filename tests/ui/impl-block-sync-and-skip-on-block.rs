use offthread::offload;

#[derive(Clone)]
struct Db;

// `sync` names one function and `skip` leaves one method alone: both go on a method.
#[offload(sync = query_blocking, skip)]
impl Db {
    fn query(&self) -> u32 {
        1
    }
}

fn main() {}
