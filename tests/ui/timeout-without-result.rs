use offthread::offload;

#[offload(timeout = "250ms")]
fn lookup(id: u32) -> Option<String> {
    Some(id.to_string())
}

async fn caller() -> Option<String> {
    lookup(7).await
}

fn main() {
    let _ = caller();
}
