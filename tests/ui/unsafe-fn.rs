use offthread::offload;

#[offload]
unsafe fn read_raw(ptr: usize) -> u8 {
    ptr as u8
}

fn main() {}
