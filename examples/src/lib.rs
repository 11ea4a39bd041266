//! The virtual-node lab used by the examples.
