//! cnet-ipam
