use offthread::offload;

#[offload]
extern "C" fn callback(n: u32) -> u32 {
    n
}

fn main() {}
