//! cnet-cni
