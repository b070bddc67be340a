use offthread::offload;
use std::rc::Rc;

#[offload]
fn make() -> Rc<u32> {
    Rc::new(1)
}

fn main() {}
