use offthread::offload;

#[derive(Clone)]
struct Cache {
    hits: u32,
}

impl Cache {
    #[offload]
    fn record(&mut self) -> u32 {
        self.hits += 1;
        self.hits
    }
}

async fn caller(mut cache: Cache) -> u32 {
    cache.record().await
}

fn main() {
    let _ = caller(Cache { hits: 0 });
}
