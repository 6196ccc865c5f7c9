//! The protobuf codec of numguard's services and clients: prost's, except that a message
//! is decoded from one slice rather than through tonic's buffer.
//!
//! prost reads through `bytes`' `Buf` one field or one varint at a time. Through tonic's
//! `DecodeBuf` each step is an out-of-line call that advances a `BytesMut`; that was the
//! largest cost of an audit's client (about a fifth of its instructions). On a `&[u8]` the
//! same steps are inlined. (Encoding into a `Vec` first was tried too, and cost more
//! instructions than prost writing into tonic's buffer directly.)

use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// Encodes as prost does; decodes from a slice.
#[derive(Debug, Clone, Copy)]
pub struct SliceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        SliceCodec(PhantomData)
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder(PhantomData)
    }
}

/// Decodes one message from its bytes as one slice.
#[derive(Debug, Clone, Copy)]
pub struct SliceDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The message's bytes split off tonic's buffer (shared, not copied), then read as
        // a slice.
        let bytes = buf.copy_to_bytes(buf.remaining());
        // As tonic-prost maps it: a message that does not parse is INTERNAL.
        U::decode(bytes.as_ref())
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pb;

    /// One gRPC length-prefixed message, uncompressed.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8];
        f.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn answer() -> pb::CheckNumberResponse {
        pb::CheckNumberResponse {
            phone_number: "+819012345678".into(),
            sources: vec!["mnp".into(), "docomo-feed".into()],
            coverage: vec![pb::Coverage {
                question: pb::CoverageQuestion::SimSwap.into(),
                source_indexes: vec![1, 0],
                gap: "none".repeat(300),
                ..Default::default()
            }],
            port_count: 3,
            ..Default::default()
        }
    }

    /// Messages written by this codec's encoder, a large one between small ones, are the
    /// bytes prost writes, and read back whole.
    #[tokio::test]
    async fn writes_what_prost_writes_and_reads_it_back() {
        use futures::StreamExt;
        use http_body_util::BodyExt;
        use tonic::codec::{EncodeBody, Streaming};

        let mut large = answer();
        large.coverage[0].gap = "x".repeat(128 * 1024);
        let messages = vec![answer(), large, answer()];
        let mut codec = SliceCodec::<pb::CheckNumberResponse, pb::CheckNumberResponse>::default();
        let body = EncodeBody::new_client(
            codec.encoder(),
            futures::stream::iter(messages.clone().into_iter().map(Ok)),
            None,
            None,
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        let expected: Vec<u8> = messages
            .iter()
            .flat_map(|m| frame(&m.encode_to_vec()))
            .collect();
        assert_eq!(bytes.as_ref(), expected.as_slice());
        let read: Vec<_> = Streaming::new_request(
            codec.decoder(),
            http_body_util::Full::new(bytes),
            None,
            None,
        )
        .map(Result::unwrap)
        .collect()
        .await;
        assert_eq!(read, messages);
    }

    /// A message written by prost's own encoder reads back whole through this codec, over
    /// a real gRPC stream; and bytes that are not the message are refused as INTERNAL.
    #[tokio::test]
    async fn reads_back_what_prost_wrote_and_refuses_garbage() {
        use futures::StreamExt;
        use tonic::codec::Streaming;

        let answer = answer();
        let mut body = frame(&answer.encode_to_vec());
        body.extend(frame(&[0xff, 0xff, 0xff]));
        let body = http_body_util::Full::new(bytes::Bytes::from(body));
        let mut stream = Streaming::new_request(
            SliceCodec::<pb::CheckNumberRequest, pb::CheckNumberResponse>::default().decoder(),
            body,
            None,
            None,
        );
        assert_eq!(stream.next().await.unwrap().unwrap(), answer);
        let refused = stream.next().await.unwrap().unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Internal);
    }
}
