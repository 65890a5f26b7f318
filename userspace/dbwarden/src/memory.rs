//! Giving memory back after very large messages.
//!
//! A 30 MB query or row passes through several buffers (the read buffer, the parser's tokens
//! and tree, the masked copy, the recording's copy, the output batch). All are freed when the
//! message is done, but glibc keeps freed memory in the arena of the thread that used it, and
//! tokio moves a session between worker threads, so one large message could leave a few
//! hundred MB resident across arenas for the rest of the daemon's life. After a message of at
//! least [`LARGE_MESSAGE`] bytes, the session shrinks its own buffers and asks the allocator to
//! return free memory to the kernel (`malloc_trim`, which walks every arena). Ordinary traffic
//! never pays for it.

use bytes::BytesMut;

/// Messages at least this large trigger a release once they are done.
pub const LARGE_MESSAGE: usize = 4 << 20;

/// Replaces an empty buffer that grew past `keep` bytes with a fresh one of `keep`.
pub fn shrink(buf: &mut BytesMut, keep: usize) {
    if buf.is_empty() && buf.capacity() > keep {
        *buf = BytesMut::with_capacity(keep);
    }
}

/// Returns free heap memory to the kernel.
pub fn release() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_only_empty_oversized_buffers() {
        let mut b = BytesMut::with_capacity(LARGE_MESSAGE);
        b.extend_from_slice(b"x");
        shrink(&mut b, 1024);
        assert!(b.capacity() >= LARGE_MESSAGE, "a buffer with data is kept");
        b.clear();
        shrink(&mut b, 1024);
        assert!(b.capacity() < LARGE_MESSAGE);
        release();
    }
}
