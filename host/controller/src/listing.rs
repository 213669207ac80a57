//! Listing the apps, the two ways wadm answers it: `model.get` without a name (wadm 0.21's
//! list: `{"result": "success", "message": …, "models": [...]}`) and the deprecated
//! `model.list` (the bare array, which wadm-client 0.10 still asks for). Both take trellis's
//! page (`{"offset": N, "limit": M}`, apps sorted by name); without one, every app.

use trellis_lattice::api::{GetResult, ListModelsRequest, ListModelsResponse, ModelSummary};

use crate::api::ApiServer;
use crate::store::StoreError;

/// What wadm says when the list is there.
const LISTED: &str = "Successfully fetched list of applications";

impl ApiServer {
    /// `model.list`: the summaries, or none when the store cannot be read (the bare array has
    /// no room for an error; the log says why).
    pub(crate) async fn list(&self, page: ListModelsRequest) -> Vec<ModelSummary> {
        self.summaries(page).await.unwrap_or_else(|e| {
            tracing::error!(lattice = %self.lattice, "cannot list apps: {e}");
            Vec::new()
        })
    }

    /// `model.get` without a name.
    pub(crate) async fn get_all(&self, page: ListModelsRequest) -> ListModelsResponse {
        match self.summaries(page).await {
            Ok(models) => ListModelsResponse {
                result: GetResult::Success,
                code: None,
                message: LISTED.to_string(),
                models,
            },
            Err(e) => {
                tracing::error!(lattice = %self.lattice, "cannot list apps: {e}");
                ListModelsResponse {
                    result: GetResult::Error,
                    code: Some(e.code()),
                    message: e.to_string(),
                    models: Vec::new(),
                }
            }
        }
    }

    async fn summaries(&self, page: ListModelsRequest) -> Result<Vec<ModelSummary>, StoreError> {
        let apps = self.store.list().await?;
        let limit = page.limit.unwrap_or(usize::MAX);
        Ok(apps
            .into_iter()
            .skip(page.offset)
            .take(limit)
            .filter_map(|(name, app)| {
                let latest = app.latest()?;
                let status = self.current_status(&name, app.deployed.as_deref());
                Some(ModelSummary::new(
                    name,
                    latest.version.clone(),
                    latest.manifest.description().map(String::from),
                    app.deployed.clone(),
                    status,
                ))
            })
            .collect())
    }
}
