use offthread::offload;

pub struct Conn;

#[offload]
fn find_user(#[local] conn: Conn, id: u32) -> u32 {
    let _ = conn;
    id
}

fn main() {}
