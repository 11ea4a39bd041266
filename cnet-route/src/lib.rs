//! cnet-route
