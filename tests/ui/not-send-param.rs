use offthread::offload;
use std::rc::Rc;

#[offload]
fn total(shared: Rc<Vec<u32>>) -> u32 {
    shared.iter().sum()
}

fn main() {}
