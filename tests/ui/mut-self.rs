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

fn main() {}
