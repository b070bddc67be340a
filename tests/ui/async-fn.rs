use offthread::offload;

#[offload]
async fn fetch(id: u32) -> u32 {
    id
}

// Awaiting gives the `u32`, as it will once `async` is removed.
async fn caller() -> u32 {
    fetch(1).await
}

fn main() {
    let _ = caller();
}
