//! The byte stream inside one CONNECT: an h2 send/receive stream pair as tokio I/O.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The bytes of one HBONE CONNECT stream (either end), as [`AsyncRead`] + [`AsyncWrite`].
///
/// Reading releases HTTP/2 flow-control capacity as the caller consumes data, so a slow
/// reader throttles the peer instead of buffering without bound. Shutting down the write
/// side ends the stream (`END_STREAM`); dropping it resets the stream if it is still open.
#[derive(Debug)]
pub struct HboneStream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received but not yet read by the caller (its capacity not yet released).
    pending: Bytes,
    read_done: bool,
    write_done: bool,
}

impl HboneStream {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream) -> HboneStream {
        HboneStream {
            send,
            recv,
            pending: Bytes::new(),
            read_done: false,
            write_done: false,
        }
    }
}

fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        match e.into_io() {
            Some(io) => io,
            None => io::Error::other("h2 I/O error"),
        }
    } else {
        io::Error::other(e)
    }
}

impl AsyncRead for HboneStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.pending.is_empty() {
            if this.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(chunk)) => this.pending = chunk,
                None => this.read_done = true,
                // The peer finished the stream with a reset that says "no error": an EOF.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => this.read_done = true,
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        // Only now is the data consumed: let the peer send that much more.
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HboneStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        if this.write_done {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        this.send.reserve_capacity(buf.len());
        loop {
            // Capacity already assigned is usable now: `poll_capacity` only reports increases,
            // so waiting on it alone could stall with capacity in hand.
            let available = this.send.capacity();
            let granted = if available > 0 {
                Some(Ok(available))
            } else {
                ready!(this.send.poll_capacity(cx))
            };
            match granted {
                // Woken without capacity: poll again (this registers the waker if none yet).
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    return Poll::Ready(
                        this.send
                            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                            .map(|()| n)
                            .map_err(h2_to_io),
                    );
                }
                // The stream is closed for sending: the reset says why.
                None | Some(Err(_)) => {
                    let reason = ready!(this.send.poll_reset(cx)).map_err(h2_to_io)?;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        format!("stream reset by peer: {reason:?}"),
                    )));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Data handed to h2 is sent by the connection task; there is nothing to flush here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.write_done {
            return Poll::Ready(Ok(()));
        }
        this.write_done = true;
        // A stream already reset by the peer has nothing left to end.
        let _ = this.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
