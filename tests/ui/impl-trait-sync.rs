use offthread::offload;

#[offload]
trait Store: Send + Sync {
    fn load(&self, key: &str) -> Vec<u8>;
}

#[derive(Clone)]
struct Disk;

#[offload]
impl Store for Disk {
    #[offload(sync = load_blocking)]
    fn load(&self, key: &str) -> Vec<u8> {
        key.as_bytes().to_vec()
    }
}

fn main() {}
