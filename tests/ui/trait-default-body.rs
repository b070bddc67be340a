use offthread::offload;

#[offload]
trait Store: Send + Sync {
    fn load(&self, key: &str) -> Vec<u8>;
    fn size(&self, key: &str) -> usize {
        key.len()
    }
}

#[derive(Clone)]
struct Disk;

// The method keeps its offloaded declaration: implementations and callers see no other error.
#[offload]
impl Store for Disk {
    fn load(&self, key: &str) -> Vec<u8> {
        key.as_bytes().to_vec()
    }

    fn size(&self, key: &str) -> usize {
        key.len()
    }
}

async fn caller(store: &dyn Store) -> usize {
    store.size("k").await + store.load("k").await.len()
}

fn main() {
    let _ = caller(&Disk);
}
