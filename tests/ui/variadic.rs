use offthread::offload;

#[offload]
fn printf_like(format: u32, _: ...) -> u32 {
    format
}

fn main() {}
