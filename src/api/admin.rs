//! `numguard.v1.Admin`: sources and carrier ranges.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::admit;
use super::convert::{source_from_pb, source_to_pb};
use super::pb;
use super::within;
use crate::domain::FieldError;
use crate::domain::auth::Scope;
use crate::engine::Engine;
use crate::ranges::RangeEntry;

pub struct AdminApi {
    engine: Arc<Engine>,
}

impl AdminApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        AdminApi { engine }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminApi {
    async fn upsert_source(
        &self,
        request: Request<pb::Source>,
    ) -> Result<Response<pb::Source>, Status> {
        within(self.limit(), self.do_upsert_source(request)).await
    }

    async fn list_sources(
        &self,
        request: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesResponse>, Status> {
        within(self.limit(), self.do_list_sources(request)).await
    }

    async fn import_ranges(
        &self,
        request: Request<pb::ImportRangesRequest>,
    ) -> Result<Response<pb::ImportRangesResponse>, Status> {
        within(self.limit(), self.do_import_ranges(request)).await
    }

    async fn lookup_range(
        &self,
        request: Request<pb::LookupRangeRequest>,
    ) -> Result<Response<pb::LookupRangeResponse>, Status> {
        within(self.limit(), self.do_lookup_range(request)).await
    }
}

impl AdminApi {
    fn limit(&self) -> std::time::Duration {
        self.engine.config().request_timeout
    }

    async fn do_upsert_source(
        &self,
        request: Request<pb::Source>,
    ) -> Result<Response<pb::Source>, Status> {
        let _admission = admit(&self.engine, &request, Scope::Admin).await?;
        let source = source_from_pb(request.get_ref())?;
        self.engine.upsert_source(&source).await?;
        tracing::info!(source = %source.name, "source upserted");
        Ok(Response::new(source_to_pb(&source)))
    }

    async fn do_list_sources(
        &self,
        request: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesResponse>, Status> {
        let _admission = admit(&self.engine, &request, Scope::Admin).await?;
        let sources = self.engine.sources();
        Ok(Response::new(pb::ListSourcesResponse {
            sources: sources.iter().map(source_to_pb).collect(),
        }))
    }

    async fn do_import_ranges(
        &self,
        request: Request<pb::ImportRangesRequest>,
    ) -> Result<Response<pb::ImportRangesResponse>, Status> {
        let _admission = admit(&self.engine, &request, Scope::Admin).await?;
        let ranges = request
            .into_inner()
            .ranges
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let prefix = r
                    .prefix
                    .parse()
                    .map_err(|e| FieldError::new("ranges", format!("[{i}].prefix {e}")))?;
                let carrier = r.carrier.trim().to_string();
                if carrier.is_empty() {
                    return Err(FieldError::new("ranges", format!("[{i}].carrier is empty")));
                }
                Ok(RangeEntry { prefix, carrier })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (upserted, total) = self.engine.import_ranges(ranges).await?;
        tracing::info!(upserted, total, "carrier ranges imported");
        Ok(Response::new(pb::ImportRangesResponse { upserted, total }))
    }

    /// Range data is public carrier information: any key that may check may look it up.
    async fn do_lookup_range(
        &self,
        request: Request<pb::LookupRangeRequest>,
    ) -> Result<Response<pb::LookupRangeResponse>, Status> {
        let _admission = admit(&self.engine, &request, Scope::Check).await?;
        let req = request.into_inner();
        let number = self
            .engine
            .parse_number("phone_number", &req.phone_number, &req.region)?;
        let ranges = self.engine.ranges();
        let found = ranges.lookup(number.e164.digits());
        Ok(Response::new(pb::LookupRangeResponse {
            phone_number: number.e164.to_string(),
            prefix: found
                .as_ref()
                .map(|m| m.prefix.to_string())
                .unwrap_or_default(),
            carrier: found.map(|m| m.carrier.to_string()).unwrap_or_default(),
            mobile: number.mobile,
        }))
    }
}
