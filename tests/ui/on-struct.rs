use offthread::offload;

#[offload]
pub struct Connection {
    id: u32,
}

fn main() {}
