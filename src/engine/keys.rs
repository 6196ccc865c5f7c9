//! Key management, done directly on the database so an operator can create the first key
//! before any server runs (`numguard keys ...`), and by the server on its first start.

use chrono::Utc;

use crate::domain::auth::{NewKey, Scopes, TenantName};
use crate::store::{KeyRecord, Store, StoreError};

/// Makes and stores a new key; the returned secret is the only copy.
pub async fn create_key(
    store: &dyn Store,
    tenant: &TenantName,
    scopes: Scopes,
) -> Result<(NewKey, KeyRecord), StoreError> {
    let key = NewKey::generate();
    let record = KeyRecord {
        id: key.id.clone(),
        tenant: tenant.clone(),
        scopes,
        hash: key.hash.to_vec(),
        created_at: crate::domain::event::to_storage_precision(Utc::now()),
        revoked_at: None,
    };
    store.create_key(&record).await?;
    Ok((key, record))
}

/// On a database without any key, makes one for tenant `default` with every scope, so
/// a new deployment can be used at all.
pub async fn create_first_key_if_none(store: &dyn Store) -> Result<Option<NewKey>, StoreError> {
    if !store.list_keys().await?.is_empty() {
        return Ok(None);
    }
    let (key, _) = create_key(store, &TenantName::first(), Scopes::all()).await?;
    Ok(Some(key))
}
