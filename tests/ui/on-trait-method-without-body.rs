use offthread::offload;

trait Store {
    #[offload]
    fn load(&self, key: &str) -> Vec<u8>;
}

fn main() {}
