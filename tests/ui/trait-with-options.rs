use offthread::offload;

// How a method runs belongs to each implementation.
#[offload(limit = 4, timeout = "1s")]
trait Store: Send + Sync {
    fn load(&self, key: &str) -> Result<Vec<u8>, offthread::Error>;
    #[offload(pool = DB)]
    fn size(&self) -> u64;
}

fn main() {}
