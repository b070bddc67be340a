use offthread::offload;

#[derive(Clone)]
pub struct Conn;

impl Conn {
    #[offload]
    fn find_user(#[local] &mut self, id: u32) -> u32 {
        let _ = self;
        id
    }
}

fn main() {}
