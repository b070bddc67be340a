#![deny(unused_must_use)]

use offthread::offload;

#[offload]
fn save(n: u32) -> u32 {
    n
}

fn main() {
    save(1);
}
