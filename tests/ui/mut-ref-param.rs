use offthread::offload;

#[offload]
fn fill(buffer: &mut Vec<u8>, n: u8) {
    buffer.push(n);
}

fn main() {}
