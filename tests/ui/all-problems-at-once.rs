use offthread::offload;

#[offload(limit = 0, retries = 3)]
async unsafe fn everything(out: &mut String, n: u32) -> &str {
    out.push_str(&n.to_string());
    ""
}

fn main() {}
