//! Generated gRPC types and stubs for `numguard.v1`.

#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("numguard.v1");

/// The encoded descriptor set, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/numguard_descriptor.bin"));
