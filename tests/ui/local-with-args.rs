use offthread::offload;

pub struct Conn;

#[offload]
fn find_user(#[local(fresh)] conn: &mut Conn, id: u32) -> u32 {
    let _ = conn;
    id
}

fn main() {}
