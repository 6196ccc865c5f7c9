//! `numguard.v1.Admin`: sources, carriers and carrier ranges.

use std::sync::Arc;

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::convert::{
    carrier_from_pb, carrier_to_pb, optional_datetime, source_definition_from_pb, source_to_pb,
};
use super::pb;
use crate::domain::Field;
use crate::domain::FieldError;
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
        self.do_upsert_source(request).await
    }

    async fn list_sources(
        &self,
        _: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesResponse>, Status> {
        self.do_list_sources().await
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::Source>, Status> {
        self.do_heartbeat(request).await
    }

    async fn list_carriers(
        &self,
        request: Request<pb::ListCarriersRequest>,
    ) -> Result<Response<pb::ListCarriersResponse>, Status> {
        self.do_list_carriers(request).await
    }

    async fn get_carrier(
        &self,
        request: Request<pb::GetCarrierRequest>,
    ) -> Result<Response<pb::Carrier>, Status> {
        self.do_get_carrier(request).await
    }

    async fn upsert_carrier(
        &self,
        request: Request<pb::Carrier>,
    ) -> Result<Response<pb::Carrier>, Status> {
        self.do_upsert_carrier(request).await
    }

    async fn add_carrier_aliases(
        &self,
        request: Request<pb::AddCarrierAliasesRequest>,
    ) -> Result<Response<pb::Carrier>, Status> {
        self.do_add_carrier_aliases(request).await
    }

    async fn import_ranges(
        &self,
        request: Request<pb::ImportRangesRequest>,
    ) -> Result<Response<pb::ImportRangesResponse>, Status> {
        self.do_import_ranges(request).await
    }

    async fn lookup_range(
        &self,
        request: Request<pb::LookupRangeRequest>,
    ) -> Result<Response<pb::LookupRangeResponse>, Status> {
        self.do_lookup_range(request).await
    }
}

impl AdminApi {
    async fn do_upsert_source(
        &self,
        request: Request<pb::Source>,
    ) -> Result<Response<pb::Source>, Status> {
        let definition = source_definition_from_pb(request.get_ref())?;
        let source = self.engine.catalog.upsert_source(definition).await?;
        tracing::info!(source = %source.name, "source upserted");
        Ok(Response::new(source_to_pb(&source, Utc::now())))
    }

    async fn do_heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::Source>, Status> {
        let req = request.into_inner();
        let until = optional_datetime(Field::CompleteUntil, req.complete_until.as_ref())?;
        let source = self.engine.catalog.heartbeat(&req.source, until).await?;
        tracing::debug!(source = %source.name, "source heard from");
        Ok(Response::new(source_to_pb(&source, Utc::now())))
    }

    async fn do_list_carriers(
        &self,
        request: Request<pb::ListCarriersRequest>,
    ) -> Result<Response<pb::ListCarriersResponse>, Status> {
        let req = request.into_inner();
        let carriers = self.engine.catalog.carriers();
        Ok(Response::new(pb::ListCarriersResponse {
            carriers: carriers
                .iter()
                .filter(|c| !req.unreviewed_only || !c.reviewed)
                .filter(|c| req.country_code == 0 || u32::from(c.country_code) == req.country_code)
                .map(carrier_to_pb)
                .collect(),
        }))
    }

    async fn do_get_carrier(
        &self,
        request: Request<pb::GetCarrierRequest>,
    ) -> Result<Response<pb::Carrier>, Status> {
        let carrier = self.engine.catalog.carrier(&request.get_ref().id)?;
        Ok(Response::new(carrier_to_pb(&carrier)))
    }

    async fn do_upsert_carrier(
        &self,
        request: Request<pb::Carrier>,
    ) -> Result<Response<pb::Carrier>, Status> {
        let carrier = carrier_from_pb(request.get_ref())?;
        let carrier = self.engine.catalog.upsert_carrier(carrier).await?;
        tracing::info!(carrier = %carrier.id, "carrier upserted");
        Ok(Response::new(carrier_to_pb(&carrier)))
    }

    async fn do_add_carrier_aliases(
        &self,
        request: Request<pb::AddCarrierAliasesRequest>,
    ) -> Result<Response<pb::Carrier>, Status> {
        let req = request.into_inner();
        let carrier = self
            .engine
            .catalog
            .alias_carrier(&req.id, &req.aliases)
            .await?;
        tracing::info!(carrier = %carrier.id, "carrier aliases added");
        Ok(Response::new(carrier_to_pb(&carrier)))
    }

    async fn do_list_sources(&self) -> Result<Response<pb::ListSourcesResponse>, Status> {
        let sources = self.engine.catalog.sources();
        let now = Utc::now();
        Ok(Response::new(pb::ListSourcesResponse {
            sources: sources.iter().map(|s| source_to_pb(s, now)).collect(),
        }))
    }

    async fn do_import_ranges(
        &self,
        request: Request<pb::ImportRangesRequest>,
    ) -> Result<Response<pb::ImportRangesResponse>, Status> {
        let ranges = request
            .into_inner()
            .ranges
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let prefix = r
                    .prefix
                    .parse()
                    .map_err(|e| FieldError::new(Field::Ranges, format!("[{i}].prefix {e}")))?;
                let carrier = r.carrier.trim().to_string();
                if carrier.is_empty() {
                    return Err(FieldError::new(
                        Field::Ranges,
                        format!("[{i}].carrier is empty"),
                    ));
                }
                Ok(RangeEntry { prefix, carrier })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let imported = self.engine.catalog.import_ranges(ranges).await?;
        tracing::info!(
            upserted = imported.written,
            total = imported.total,
            refused = imported.errors.len(),
            "carrier ranges imported"
        );
        Ok(Response::new(pb::ImportRangesResponse {
            upserted: imported.written,
            total: imported.total,
            errors: imported
                .errors
                .into_iter()
                .map(|(index, reason)| pb::RangeError {
                    index: index as u64,
                    reason,
                })
                .collect(),
        }))
    }

    /// Range data is public carrier information: any key that may check may look it up.
    async fn do_lookup_range(
        &self,
        request: Request<pb::LookupRangeRequest>,
    ) -> Result<Response<pb::LookupRangeResponse>, Status> {
        let req = request.into_inner();
        let number =
            self.engine
                .checks
                .parse_number(Field::PhoneNumber, &req.phone_number, &req.region)?;
        let ranges = self.engine.catalog.ranges();
        let carriers = self.engine.catalog.carriers();
        let found = ranges.lookup(number.e164.digits());
        Ok(Response::new(pb::LookupRangeResponse {
            phone_number: number.e164.to_string(),
            prefix: found
                .as_ref()
                .map(|m| m.prefix.to_string())
                .unwrap_or_default(),
            carrier: found
                .as_ref()
                .map(|m| carriers.name_of(m.carrier).to_string())
                .unwrap_or_default(),
            carrier_id: found.map(|m| m.carrier.to_string()).unwrap_or_default(),
            mobile: number.mobile,
        }))
    }
}
