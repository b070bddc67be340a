use offthread::offload;

#[offload(skip)]
fn lookup(id: u32) -> u32 {
    id
}

fn main() {}
