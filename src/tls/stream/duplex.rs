//! A TLS session lent to a tunnel as a [`Duplex`]: one loop reads records while the other
//! writes them. The TCP stream under it is split the way monoio splits it; the rustls
//! state is behind a `RefCell` that neither side holds across an await, so the two only
//! meet between socket operations.
//!
//! What the reading side asks rustls to say (a key update's answer) is queued and goes
//! out with the next write: a tunnel only lives while both sides are there to write.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};

use bytes::{Buf, BufMut, BytesMut};
use rustls::{ConnectionCommon, SideData};

use super::TlsStream;
use crate::io::{give_back, take_buffer, Duplex, IntoDuplex, TcpDuplex, BUFFER_BYTES};

/// A borrowed TLS session read and written from two loops at once.
pub struct TlsDuplex<'a, C> {
    io: TcpDuplex<'a>,
    state: RefCell<Session<'a, C>>,
}

/// The session's state both loops touch, one at a time.
struct Session<'a, C> {
    tls: &'a mut C,
    /// Ciphertext read and not yet taken by rustls (it takes no more while its plaintext
    /// is unread).
    incoming: &'a mut BytesMut,
}

impl<C, D> IntoDuplex for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
{
    type Duplex<'a>
        = TlsDuplex<'a, C>
    where
        Self: 'a;

    fn duplex(&mut self) -> TlsDuplex<'_, C> {
        TlsDuplex {
            io: self.io.duplex(),
            state: RefCell::new(Session {
                tls: &mut self.tls,
                incoming: &mut self.incoming,
            }),
        }
    }
}

impl<C, D> Session<'_, C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
{
    /// Plaintext into `buf`'s spare room, after handing rustls the ciphertext it can take:
    /// `None` when more ciphertext is needed.
    fn take_plaintext(&mut self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        while !self.incoming.is_empty() {
            let mut unread = &self.incoming[..];
            let taken = match self.tls.read_tls(&mut unread) {
                Ok(taken) => taken,
                // rustls' buffer is full of plaintext nobody read yet: read it first.
                Err(e) if e.kind() == io::ErrorKind::Other => 0,
                Err(e) => return Err(e),
            };
            self.incoming.advance(taken);
            let state = self
                .tls
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if taken == 0 || state.plaintext_bytes_to_read() > 0 {
                break;
            }
        }
        let start = buf.len();
        buf.resize(start + BUFFER_BYTES, 0);
        let read = self.tls.reader().read(&mut buf[start..]);
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Encrypts all of `plain` into records in `out`.
    fn seal(&mut self, plain: &[u8], out: &mut BytesMut) -> io::Result<()> {
        let mut rest = plain;
        loop {
            let n = self.tls.writer().write(rest)?;
            rest = &rest[n..];
            let mut writer = out.writer();
            while self.tls.wants_write() {
                self.tls.write_tls(&mut writer)?;
            }
            if rest.is_empty() {
                return Ok(());
            }
        }
    }
}

impl<C, D> Duplex for TlsDuplex<'_, C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
{
    async fn recv(&self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        loop {
            match self.state.borrow_mut().take_plaintext(&mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            let (read, cipher) = self.io.recv(take_buffer()).await;
            let mut state = self.state.borrow_mut();
            match read {
                Ok(0) => {
                    give_back(cipher);
                    // rustls learns of the end: a clean close reads as 0, a truncation
                    // as an error.
                    let _ = state.tls.read_tls(&mut io::empty());
                    if let Err(e) = state.tls.process_new_packets() {
                        return (Err(io::Error::new(io::ErrorKind::InvalidData, e)), buf);
                    }
                    let result = match state.take_plaintext(&mut buf) {
                        Ok(Some(n)) => Ok(n),
                        Ok(None) => Err(io::ErrorKind::UnexpectedEof.into()),
                        Err(e) => Err(e),
                    };
                    return (result, buf);
                }
                Ok(_) if state.incoming.is_empty() => {
                    give_back(std::mem::replace(state.incoming, cipher));
                }
                Ok(_) => state.incoming.extend_from_slice(&cipher),
                Err(e) => {
                    give_back(cipher);
                    return (Err(e), buf);
                }
            }
        }
    }

    async fn send(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let mut out = take_buffer();
        if let Err(e) = self.state.borrow_mut().seal(&buf, &mut out) {
            give_back(out);
            return (Err(e), buf);
        }
        let (result, out) = self.io.send(out).await;
        give_back(out);
        (result, buf)
    }
}
