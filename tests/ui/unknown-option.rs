use offthread::offload;

#[offload(threads = 4)]
fn work(n: u32) -> u32 {
    n
}

// The function is still emitted, awaitable: no "cannot find function" or "`u32` is not a
// future" error here.
async fn caller() -> u32 {
    work(1).await + 1
}

fn main() {
    let _ = caller();
}
