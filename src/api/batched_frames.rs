//! gRPC response bodies cut into DATA frames small enough for h2 to batch.
//!
//! h2 copies a DATA frame under 1 KiB into its write buffer, together with the frames
//! around it, when the connection does not write vectored (as the plain-TCP wrapper in
//! `connections.rs` says). A longer frame is written from its own buffer and ends the batch,
//! so an answer just over 1 KiB took a write of its own: answers that name many sources or
//! carry many reasons crossed it (BENCHMARKS.md, check_load, "Answers just over 1 KiB").
//! Cutting a chunk costs a frame header per piece and h2's copy of it, while the write it
//! saves stays one, so only chunks up to 4 KiB are cut (a judgement, not measured); larger
//! ones, most of an audit's batches, pass whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The largest DATA frame h2 copies into its write buffer on a connection that does not
/// write vectored (h2 0.4 `CHAIN_THRESHOLD_WITHOUT_VECTORED_IO`, less one).
const COPIED_FRAME_BYTES: usize = 1_023;

/// Chunks up to this many bytes are cut into pieces of [`COPIED_FRAME_BYTES`].
const CUT_UP_TO_BYTES: usize = 4 * COPIED_FRAME_BYTES;

/// A response body whose data chunks between 1 KiB and [`CUT_UP_TO_BYTES`] come out as
/// pieces of at most [`COPIED_FRAME_BYTES`], in order; other frames pass unchanged.
pub struct BatchedFrames<B> {
    body: B,
    /// Whether chunks are cut at all.
    cut: bool,
    /// The part of the last chunk not yet given out.
    rest: Bytes,
}

impl<B> BatchedFrames<B> {
    /// Wraps `body`, cutting its chunks if `cut`: only where the connection does not write
    /// vectored. tonic's TLS stream does, and h2 then copies only frames under 256 bytes, so
    /// cutting there would add writes rather than save them.
    pub fn new(body: B, cut: bool) -> Self {
        BatchedFrames {
            body,
            cut,
            rest: Bytes::new(),
        }
    }

    fn next_piece(&mut self) -> Frame<Bytes> {
        let len = self.rest.len().min(COPIED_FRAME_BYTES);
        Frame::data(self.rest.split_to(len))
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for BatchedFrames<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if !self.rest.is_empty() {
            return Poll::Ready(Some(Ok(self.next_piece())));
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(chunk)
                    if self.cut
                        && (COPIED_FRAME_BYTES + 1..=CUT_UP_TO_BYTES).contains(&chunk.len()) =>
                {
                    self.rest = chunk;
                    Poll::Ready(Some(Ok(self.next_piece())))
                }
                Ok(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            polled => polled,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    type Frames = Vec<Result<Frame<Bytes>, std::convert::Infallible>>;

    fn bytes(len: usize, seed: u8) -> Bytes {
        (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
    }

    /// The data chunks' lengths, and the trailers if any, as the body gives them out.
    async fn given_out(frames: Frames, cut: bool) -> (Vec<usize>, Bytes, Option<http::HeaderMap>) {
        let mut body = BatchedFrames::new(StreamBody::new(futures::stream::iter(frames)), cut);
        let (mut lens, mut all, mut trailers) = (Vec::new(), Vec::new(), None);
        while let Some(frame) = body.frame().await {
            match frame.unwrap().into_data() {
                Ok(data) => {
                    lens.push(data.len());
                    all.extend_from_slice(&data);
                }
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        (lens, all.into(), trailers)
    }

    fn frames(chunks: &[Bytes], trailers: Option<&http::HeaderMap>) -> Frames {
        let data = chunks.iter().map(|c| Ok(Frame::data(c.clone())));
        data.chain(trailers.map(|t| Ok(Frame::trailers(t.clone()))))
            .collect()
    }

    #[tokio::test]
    async fn chunks_just_over_the_copy_limit_come_out_in_copied_pieces() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let chunks = [bytes(1_083, 1), bytes(300, 2), bytes(4_000, 3)];

        let (lens, all, got) = given_out(frames(&chunks, Some(&trailers)), true).await;
        assert_eq!(lens, [1_023, 60, 300, 1_023, 1_023, 1_023, 931]);
        assert_eq!(all, chunks.concat());
        assert_eq!(got.as_ref(), Some(&trailers));

        let (lens, all, got) = given_out(frames(&chunks, Some(&trailers)), false).await;
        assert_eq!(lens, [1_083, 300, 4_000]);
        assert_eq!(all, chunks.concat());
        assert_eq!(got, Some(trailers));
    }

    #[tokio::test]
    async fn chunks_at_the_limits_pass_whole() {
        let chunks = [
            bytes(COPIED_FRAME_BYTES, 1),
            bytes(CUT_UP_TO_BYTES + 1, 2),
            bytes(0, 3),
        ];

        let (lens, all, trailers) = given_out(frames(&chunks, None), true).await;

        assert_eq!(lens, [COPIED_FRAME_BYTES, CUT_UP_TO_BYTES + 1, 0]);
        assert_eq!(all, chunks.concat());
        assert_eq!(trailers, None);
    }

    #[tokio::test]
    async fn the_size_hint_counts_the_piece_not_yet_given_out() {
        let mut body = BatchedFrames::new(http_body_util::Full::new(bytes(2_000, 0)), true);
        assert_eq!(body.size_hint().exact(), Some(2_000));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), COPIED_FRAME_BYTES);
        assert_eq!(
            body.size_hint().exact(),
            Some(2_000 - COPIED_FRAME_BYTES as u64)
        );
        assert!(!body.is_end_stream());
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(second.len(), 2_000 - COPIED_FRAME_BYTES);
        assert!(body.is_end_stream());
    }
}
