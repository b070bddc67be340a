use offthread::offload;

#[offload]
fn fill(buffer: &mut Vec<u8>, n: u8) {
    buffer.push(n);
}

// A caller that awaits the rejected function gets no second error: the function is still
// emitted in its offloaded shape.
async fn caller() {
    let mut buffer = Vec::new();
    fill(&mut buffer, 1).await;
}

fn main() {
    let _ = caller();
}
