use offthread::offload;

#[offload]
fn count<T>(items: Vec<T>) -> usize {
    items.len()
}

fn main() {}
