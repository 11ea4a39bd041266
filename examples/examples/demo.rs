//! The cnet demo (placeholder until the virtual-node demo lands).
fn main() {
    println!("cnet demo: nothing to show yet");
}
