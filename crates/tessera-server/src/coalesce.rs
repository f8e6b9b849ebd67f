//! A writer that holds what is written until it is flushed, so that everything one flush sends
//! leaves in one write to the layer below: one TLS record and one syscall where there were
//! several.
//!
//! Why (BENCHMARKS.md, issue 16, item 9): h2 writes a DATA frame of 256 bytes or more as its
//! own buffer when the connection supports vectored writes, and must flush it before it can
//! encode the next frame, so every gRPC reply cost two writes (headers and message, then the
//! trailers). This writer says it does not write vectored, so h2 copies frames under 1 KiB into
//! its own buffer and a reply is one write; larger frames, which h2 hands over in pieces, are
//! joined here until the flush. `tokio::io::BufWriter` would join them too, but it says it
//! writes vectored (which keeps h2's 256-byte limit) and keeps its buffer for the connection's
//! life; this one frees it after each flush, so idle connections hold none.
//!
//! A flush also waits one turn of the scheduler before it writes (item 10): the ledger answers
//! a whole batch of mints at once, and their replies, each finished by its own task, would
//! otherwise each be flushed by the connection's task, which the runtime runs right after the
//! task that woke it. Yielding once puts the connection's task behind the replies already
//! runnable, so that they share its write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

/// The most held before a write is passed on without waiting for a flush, in bytes: the
/// largest TLS record's plaintext.
pub const LIMIT: usize = 16 * 1024;

/// Wraps a writer; see the module documentation.
#[derive(Debug)]
pub struct CoalescedWriter<W> {
    inner: W,
    held: Vec<u8>,
    /// How much of `held` the inner writer has taken.
    passed: usize,
    /// Whether the flush asked for has already yielded its turn (see the module documentation).
    yielded: bool,
}

impl<W: AsyncWrite + Unpin> CoalescedWriter<W> {
    /// Returns a writer that holds writes to `inner` until flushed.
    pub fn new(inner: W) -> Self {
        CoalescedWriter {
            inner,
            held: Vec::new(),
            passed: 0,
            yielded: false,
        }
    }

    /// Returns the inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Returns the inner writer, for reads: writing to it directly would reorder bytes.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Passes everything held to the inner writer, then frees the buffer. Fails when the
    /// inner writer fails or takes nothing.
    fn poll_pass(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.passed < self.held.len() {
            let rest = &self.held[self.passed..];
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.passed += n;
        }
        self.held = Vec::new();
        self.passed = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CoalescedWriter<W> {
    /// Holds `data` and returns its length; first passes on what is held when `data` would take
    /// it past [`LIMIT`], and passes `data` straight on when it alone is that large.
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.held.len() + data.len() > LIMIT {
            ready!(this.poll_pass(cx))?;
        }
        if data.len() >= LIMIT {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.held.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    /// Passes on what is held and flushes the inner writer; when something is held, first
    /// returns `Pending` once, waking itself, so that the tasks already runnable write first.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.passed < this.held.len() && !this.yielded {
            // A task that wakes itself while it runs is queued behind the runnable tasks
            // (tokio reschedules it as a yield, never in its "run next" slot).
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_pass(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pass(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// False, so that h2 copies small frames instead of handing them over one by one.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records each write it takes; takes at most `max` bytes at a time.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        shut: bool,
        max: Option<usize>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.max.map_or(data.len(), |m| m.min(data.len()));
            self.writes.push(data[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_before_a_flush_reach_the_inner_writer_as_one_write() {
        let mut w = CoalescedWriter::new(Recorder::default());
        w.write_all(b"headers").await.unwrap();
        w.write_all(b"message").await.unwrap();
        w.write_all(b"trailers").await.unwrap();
        assert!(
            w.get_ref().writes.is_empty(),
            "nothing passes before the flush"
        );
        w.flush().await.unwrap();
        assert_eq!(w.get_ref().writes, vec![b"headersmessagetrailers".to_vec()]);
        assert_eq!(w.get_ref().flushes, 1);
        assert_eq!(w.held.capacity(), 0, "the buffer is freed after the flush");
    }

    #[tokio::test]
    async fn what_the_inner_writer_takes_in_part_is_passed_on_in_order() {
        let mut w = CoalescedWriter::new(Recorder {
            max: Some(3),
            ..Recorder::default()
        });
        w.write_all(b"abcdefgh").await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(w.get_ref().writes.concat(), b"abcdefgh");
        assert_eq!(w.get_ref().writes.len(), 3);
    }

    #[tokio::test]
    async fn a_write_past_the_limit_passes_what_is_held_first_and_keeps_the_order() {
        let mut w = CoalescedWriter::new(Recorder::default());
        w.write_all(&[1; 10]).await.unwrap();
        w.write_all(&vec![2; LIMIT - 5]).await.unwrap();
        assert_eq!(w.get_ref().writes, vec![vec![1; 10]]);
        w.write_all(&vec![3; LIMIT]).await.unwrap();
        assert_eq!(
            w.get_ref().writes.len(),
            3,
            "a full-size write goes straight on"
        );
        assert_eq!(w.get_ref().writes[1], vec![2; LIMIT - 5]);
        assert_eq!(w.get_ref().writes[2], vec![3; LIMIT]);
    }

    #[tokio::test]
    async fn shutdown_passes_what_is_held_before_closing() {
        let mut w = CoalescedWriter::new(Recorder::default());
        w.write_all(b"close_notify follows").await.unwrap();
        w.shutdown().await.unwrap();
        assert_eq!(w.get_ref().writes, vec![b"close_notify follows".to_vec()]);
        assert!(w.get_ref().shut);
    }

    /// Counts its wake-ups.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_flush_yields_once_so_that_writes_made_meanwhile_share_its_write() {
        let wakes = std::sync::Arc::new(Wakes(0.into()));
        let waker = std::task::Waker::from(std::sync::Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut w = CoalescedWriter::new(Recorder::default());
        assert!(
            Pin::new(&mut w)
                .poll_write(&mut cx, b"reply one")
                .is_ready()
        );
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_pending());
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(w.get_ref().writes.is_empty());
        assert!(
            Pin::new(&mut w)
                .poll_write(&mut cx, b", reply two")
                .is_ready()
        );
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        assert_eq!(w.get_ref().writes, vec![b"reply one, reply two".to_vec()]);
        assert!(
            Pin::new(&mut w).poll_flush(&mut cx).is_ready(),
            "with nothing held a flush does not yield"
        );
        assert!(Pin::new(&mut w).poll_write(&mut cx, b"next").is_ready());
        assert!(
            Pin::new(&mut w).poll_flush(&mut cx).is_pending(),
            "the next flush yields again"
        );
    }

    #[test]
    fn it_does_not_claim_vectored_writes_so_h2_copies_small_frames() {
        assert!(!CoalescedWriter::new(Recorder::default()).is_write_vectored());
    }
}
