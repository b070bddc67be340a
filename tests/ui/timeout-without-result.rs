use offthread::offload;

#[offload(timeout = "250ms")]
fn lookup(id: u32) -> Option<String> {
    Some(id.to_string())
}

fn main() {}
