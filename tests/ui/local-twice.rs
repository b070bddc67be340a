use offthread::offload;

pub struct Conn;
pub struct Cache;

#[offload]
fn find_user(#[local] conn: &mut Conn, #[local] cache: &mut Cache, id: u32) -> u32 {
    let _ = (conn, cache);
    id
}

fn main() {}
