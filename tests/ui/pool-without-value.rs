use offthread::offload;

#[offload(pool = )]
fn work(n: u32) -> u32 {
    n
}

fn main() {}
