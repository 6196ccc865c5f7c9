//! Generated gRPC types and stubs for `numguard.v1`.

#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("numguard.v1");

/// The encoded descriptor set, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/numguard_descriptor.bin"));

impl CheckNumberResponse {
    /// The names of the sources that supply one question's coverage, resolved from the
    /// answer's list of sources (an index past its end, which numguard never sends, is
    /// skipped).
    pub fn coverage_sources<'a>(&'a self, c: &'a Coverage) -> impl Iterator<Item = &'a str> {
        c.source_indexes
            .iter()
            .filter_map(|&i| self.sources.get(usize::try_from(i).ok()?))
            .map(String::as_str)
    }
}
