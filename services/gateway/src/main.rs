//! `gateway`: realtime broadcasts to WebSocket and SSE clients.

fn main() {}
