//! Development helper: print the parsed tree of a page (elements with some text) with the
//! extractor's view of it, then the extracted text.
use std::io::Read;
fn main() {
    let path = std::env::args().nth(1).expect("file");
    let min: u32 = std::env::args().nth(2).map_or(200, |d| d.parse().unwrap());
    let raw = std::fs::read(&path).unwrap();
    let mut bytes = Vec::new();
    if path.ends_with(".gz") {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut bytes)
            .unwrap();
    } else {
        bytes = raw;
    }
    let opts = harman_extract::ExtractOptions::default();
    let d = harman_extract::decode::decode(&bytes, None);
    let dom = harman_extract::dom::parse(
        &d.text,
        harman_extract::dom::DomLimits {
            max_depth: 512,
            max_nodes: 1 << 20,
        },
    );
    let page = harman_extract::content::Page::new(&dom, &opts);
    print!("{}", page.outline(min));
    println!("=== main blocks: {:?}", page.main_blocks());
    println!(
        "{}",
        harman_extract::extract_html(&bytes, None, None, &opts)
            .text
            .unwrap_or_default()
    );
}
