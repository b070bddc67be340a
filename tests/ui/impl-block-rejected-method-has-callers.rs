use offthread::offload;

#[derive(Clone)]
struct Counter {
    hits: u32,
}

#[offload]
impl Counter {
    #[offload(skip)]
    fn new() -> Counter {
        Counter { hits: 0 }
    }

    fn bump(&mut self) -> u32 {
        self.hits += 1;
        self.hits
    }

    fn hits(&self) -> u32 {
        self.hits
    }
}

// Only the macro's error: `bump` is still awaitable, and the other methods are offloaded.
async fn caller() -> u32 {
    let mut counter = Counter::new();
    counter.bump().await + counter.hits().await
}

fn main() {
    let _ = caller();
}
