//! `numguard.v1.NumberCheck`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::admit;
use super::convert::{check_response, optional_datetime};
use super::pb;
use super::within;
use crate::domain::auth::Scope;
use crate::engine::Engine;

pub struct NumberCheckApi {
    engine: Arc<Engine>,
}

impl NumberCheckApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        NumberCheckApi { engine }
    }
}

#[tonic::async_trait]
impl pb::number_check_server::NumberCheck for NumberCheckApi {
    async fn check_number(
        &self,
        request: Request<pb::CheckNumberRequest>,
    ) -> Result<Response<pb::CheckNumberResponse>, Status> {
        within(self.engine.config().request_timeout, self.check(request)).await
    }
}

impl NumberCheckApi {
    async fn check(
        &self,
        request: Request<pb::CheckNumberRequest>,
    ) -> Result<Response<pb::CheckNumberResponse>, Status> {
        let admission = admit(&self.engine, &request, Scope::Check).await?;
        let caller = &admission.principal;
        let req = request.into_inner();
        let max_age = self.engine.max_age(req.max_age_hours)?;
        let owner_since = self.engine.owner_since(
            optional_datetime("owner_since", req.owner_since.as_ref())?,
            &req.owner_since_date,
        )?;
        let (number, decision) = self
            .engine
            .check_input(
                &caller.tenant,
                &req.phone_number,
                &req.region,
                max_age,
                owner_since,
            )
            .await?;
        Ok(Response::new(check_response(
            &number,
            decision,
            caller.precision,
        )))
    }
}
