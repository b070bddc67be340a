use offthread::offload;

#[offload(limit = 2, limit = 3)]
fn work(n: u32) -> u32 {
    n
}

fn main() {}
