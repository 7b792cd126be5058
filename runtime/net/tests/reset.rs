//! `Stack::reset_all`: what the runtime does to a vif's connections when the guest ends.
//! Over the loopback device both ends are the stack's own, so both are reset.

use embassy_futures::join::join;
use embassy_time::{Duration, Timer};
use embedded_io_async::{Read, Write};
use xenpv_net::loopback;
use xenpv_net::tcp::Error;
use xenpv_net::{TcpListener, TcpStream};

#[test]
fn reset_all_cuts_a_transfer_in_progress_and_its_rsts_go_out() {
    let (n, pending_at_once, pending_later, server, client) = loopback::run(|stack| async move {
        let listener = TcpListener::bind(&stack, 80).unwrap();
        let s2 = stack.clone();
        let server = async {
            let mut s = listener.accept().await.unwrap();
            let chunk = [9u8; 4096];
            // An endless body: only the reset ends it.
            loop {
                if let Err(e) = s.write_all(&chunk).await {
                    return e;
                }
            }
        };
        let client = async {
            let mut c = TcpStream::connect(&stack, loopback::endpoint(80))
                .await
                .unwrap();
            let mut buf = [0u8; 4096];
            let mut got = 0usize;
            while got < 100_000 {
                got += c.read(&mut buf).await.unwrap();
            }
            let n = s2.reset_all();
            let at_once = s2.resets_pending();
            Timer::after(Duration::from_millis(50)).await;
            let later = s2.resets_pending();
            let end = loop {
                match c.read(&mut buf).await {
                    Ok(0) => break Ok(0),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            };
            (n, at_once, later, end)
        };
        let f = join(server, client);
        let (server, (n, at_once, later, client)) =
            embassy_time::with_timeout(Duration::from_secs(20), f)
                .await
                .expect("the test took over 20 s");
        (n, at_once, later, server, client)
    });
    assert_eq!(n, 2, "both ends of the one connection");
    assert!(
        pending_at_once,
        "the RSTs go out at the runner's next round"
    );
    assert!(!pending_later, "and then they are out");
    assert_eq!(server, Error::ConnectionReset);
    assert_eq!(client, Err(Error::ConnectionReset));
}
