//! Proxies that strip TLS, standing for a network attacker in front of a real database on
//! 127.0.0.1 (no real peer plays that part). Each returns its address and a flag that is set
//! when a plaintext session (a login) went through it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A proxy that strips TLS: returns its address and whether a plaintext session was relayed.
pub fn postgres(server: String) -> (String, Arc<AtomicBool>) {
    serve(server, |mut client, server, flag| {
        let mut first = [0u8; 8];
        if client.read_exact(&mut first).is_err() {
            return;
        }
        let ssl_request = first == [0, 0, 0, 8, 4, 210, 22, 47];
        let mut upstream = TcpStream::connect(server).unwrap();
        if ssl_request {
            // "no TLS here": a client that asked for TLS must stop now
            if client.write_all(b"N").is_err() {
                return;
            }
            let mut next = [0u8; 8];
            if client.read_exact(&mut next).is_err() {
                return;
            }
            flag.store(true, Ordering::SeqCst);
            upstream.write_all(&next).unwrap();
        } else {
            flag.store(true, Ordering::SeqCst);
            upstream.write_all(&first).unwrap();
        }
        relay(client, upstream);
    })
}

/// A MySQL/MariaDB proxy that clears `CLIENT_SSL` in the server's greeting ("no TLS here") and
/// relays the rest; the flag is set when the client sends its login anyway.
pub fn mysql(server: String) -> (String, Arc<AtomicBool>) {
    serve(server, |mut client, server, flag| {
        let mut upstream = TcpStream::connect(server).unwrap();
        upstream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let Some(mut greeting) = read_packet(&mut upstream) else { return };
        // protocol 10: version, NUL, thread id (4), auth data (8), filler (1), then the
        // low two bytes of the capabilities; CLIENT_SSL is 0x0800
        let version_end = greeting[5..].iter().position(|b| *b == 0).map(|p| 5 + p).unwrap();
        let caps = version_end + 1 + 4 + 8 + 1;
        greeting[caps + 1] &= !0x08;
        if client.write_all(&greeting).is_err() {
            return;
        }
        // a client that asked for TLS must hang up now (a COM_QUIT is fine); a packet
        // longer than the 32-byte fixed part of a handshake response carries its login
        let Some(login) = read_packet(&mut client) else { return };
        if login.len() - 4 <= 32 {
            return;
        }
        flag.store(true, Ordering::SeqCst);
        upstream.write_all(&login).unwrap();
        relay(client, upstream);
    })
}

/// One MySQL packet with its 4-byte header, or `None` when the peer hung up.
fn read_packet(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    let mut p = head.to_vec();
    p.resize(4 + len, 0);
    s.read_exact(&mut p[4..]).ok()?;
    Some(p)
}

/// Listen on a free port of 127.0.0.1 and run `handle` for each connection (up to 64) on its own
/// thread, with the client's reads timing out after 10 s; returns the address and the flag
/// `handle` sets when a plaintext login went through.
fn serve(server: String, handle: fn(TcpStream, &str, &AtomicBool)) -> (String, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let plaintext = Arc::new(AtomicBool::new(false));
    let flag = plaintext.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(64) {
            let Ok(client) = conn else { return };
            let (server, flag) = (server.clone(), flag.clone());
            std::thread::spawn(move || {
                client.set_read_timeout(Some(Duration::from_secs(10))).ok();
                handle(client, &server, &flag);
            });
        }
    });
    (addr, plaintext)
}

/// Copy both ways until either side hangs up (no read timeouts from here on).
fn relay(mut client: TcpStream, mut upstream: TcpStream) {
    client.set_read_timeout(None).ok();
    upstream.set_read_timeout(None).ok();
    let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut u2, &mut c2);
    });
    let _ = std::io::copy(&mut client, &mut upstream);
    let _ = upstream.shutdown(std::net::Shutdown::Both);
    let _ = t.join();
}
