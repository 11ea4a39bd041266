//! cnet-policy
