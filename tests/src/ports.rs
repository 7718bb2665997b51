//! Free loopback ports for servers the tests start.
//!
//! The port is free when returned; another process could take it before the caller binds, so
//! helpers that start servers retry on a bind failure.

use std::net::{Ipv4Addr, TcpListener};

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("binding 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("a bound listener has a local address")
        .port()
}

/// `n` distinct free ports (all held open until every one is chosen, so they differ).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .expect("binding 127.0.0.1:0 to find a free port")
        })
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("a bound listener has a local address")
                .port()
        })
        .collect()
}
