use offthread::offload;

#[offload(threads = 4)]
fn work(n: u32) -> u32 {
    n
}

fn main() {
    // The item is still emitted: no "cannot find function" error here.
    let _ = work(1);
}
