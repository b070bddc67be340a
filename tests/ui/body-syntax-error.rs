use offthread::offload;

#[derive(Clone)]
struct Store(Vec<u8>);

// A syntax error inside the body is the parser's own, at its place.
#[offload]
fn parse(text: &str) -> usize {
    let n = text.len() +;
    n
}

impl Store {
    #[offload]
    fn size(&self) -> usize {
        let n = self.0.len() * ;
        n
    }
}

fn main() {}
