use offthread::offload;
use std::borrow::Cow;

#[offload]
fn first_word(text: &str) -> &str {
    text.split(' ').next().unwrap_or("")
}

#[offload]
fn normalized<'a>(text: &'a str) -> Cow<'a, str> {
    Cow::Borrowed(text)
}

fn main() {}
