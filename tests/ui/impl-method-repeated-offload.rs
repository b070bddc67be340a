use offthread::offload;

#[derive(Clone)]
struct Db;

#[offload]
impl Db {
    #[offload(limit = 2)]
    #[offload(timeout = "1s")]
    fn query(&self) -> Result<u32, offthread::Error> {
        Ok(1)
    }
}

fn main() {}
