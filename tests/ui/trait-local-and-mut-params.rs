use offthread::offload;

pub struct Conn;

#[offload]
trait Repo: Send + Sync {
    fn find(&self, #[local] conn: &mut Conn, id: u32) -> Option<String>;
    fn bump(&mut self) -> u32;
    fn name(&self) -> &str;
}

fn main() {}
