use offthread::offload;

pub struct Conn;

#[offload]
fn find_user(#[local] conn: Conn, id: u32) -> u32 {
    let _ = conn;
    id
}

// Callers do not pass the `#[local]` parameter, rejected or not.
async fn caller() -> u32 {
    find_user(7).await
}

fn main() {
    let _ = caller();
}
