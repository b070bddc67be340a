use offthread::offload;

struct Db;

#[offload]
impl Db {
    fn query(&self) -> u32 {
        1
    }
}

fn main() {}
