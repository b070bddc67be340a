use offthread::offload;

struct Handle {
    id: u32,
}

impl Handle {
    #[offload]
    fn id(&self) -> u32 {
        self.id
    }
}

#[offload]
fn handle_id(handle: &Handle) -> u32 {
    handle.id
}

fn main() {}
