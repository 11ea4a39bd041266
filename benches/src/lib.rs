//! Side-by-side measurements of cnet against its peers.
