//! The OpenAPI document of each CAMARA API this facade serves, at `<base path>/openapi.yaml`
//! (`/sim-swap/v2/openapi.yaml`, …): the released document shipped in `data/camara/`, with
//! numguard's additions from `openapi_overlay.yaml` and nothing else. A client generated
//! from it is the client generated from CAMARA's own document.

use std::sync::LazyLock;

use serde_json::{Map, Value};

/// A released CAMARA document, as shipped.
pub struct Released {
    /// Its file in `data/camara/`.
    pub file: &'static str,
    text: &'static str,
}

/// A released document shipped in `data/camara/`, by file name.
macro_rules! released {
    ($file:literal) => {
        Released {
            file: $file,
            text: include_str!(concat!("../../data/camara/", $file)),
        }
    };
}

/// The released documents of the APIs served.
pub const RELEASED: [Released; 5] = [
    released!("sim-swap.yaml"),
    released!("device-swap.yaml"),
    released!("number-recycling.yaml"),
    released!("kyc-tenure.yaml"),
    released!("sim-swap-subscriptions.yaml"),
];

const OVERLAY: &str = include_str!("openapi_overlay.yaml");

/// The operations' keys in an OpenAPI path item.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One API's documents.
pub struct ApiDocument {
    /// Where its operations are served, from the document's `servers` (`/sim-swap/v2`).
    pub base_path: String,
    /// The released document.
    pub official: Value,
    /// The released document with numguard's additions.
    pub served: Value,
    /// `served` as YAML.
    pub yaml: String,
}

impl ApiDocument {
    /// Where the document itself is served.
    pub fn path(&self) -> String {
        format!("{}/openapi.yaml", self.base_path)
    }
}

static DOCUMENTS: LazyLock<Result<Vec<ApiDocument>, String>> = LazyLock::new(generate);

/// Every API's documents; an error names the document that could not be read (a unit
/// test keeps them readable).
pub fn documents() -> Result<&'static [ApiDocument], &'static str> {
    DOCUMENTS.as_deref().map_err(String::as_str)
}

fn generate() -> Result<Vec<ApiDocument>, String> {
    let overlay: Value =
        serde_norway::from_str(OVERLAY).map_err(|e| format!("openapi_overlay.yaml: {e}"))?;
    RELEASED
        .iter()
        .map(|released| {
            let official: Value = serde_norway::from_str(released.text)
                .map_err(|e| format!("{}: {e}", released.file))?;
            let served =
                with_overlay(&official, &overlay).map_err(|e| format!("{}: {e}", released.file))?;
            let yaml =
                serde_norway::to_string(&served).map_err(|e| format!("{}: {e}", released.file))?;
            Ok(ApiDocument {
                base_path: base_path(&official).map_err(|e| format!("{}: {e}", released.file))?,
                official,
                served,
                yaml,
            })
        })
        .collect()
}

/// The path of the document's first server URL, `{apiRoot}/sim-swap/v2` → `/sim-swap/v2`.
fn base_path(doc: &Value) -> Result<String, String> {
    doc.pointer("/servers/0/url")
        .and_then(Value::as_str)
        .and_then(|url| url.strip_prefix("{apiRoot}"))
        .filter(|path| path.starts_with('/'))
        .map(str::to_string)
        .ok_or_else(|| "servers[0].url is not {apiRoot}/<path>".to_string())
}

/// `official` with the overlay's responses on every operation that does not declare them
/// and its components added; refuses to replace anything official.
fn with_overlay(official: &Value, overlay: &Value) -> Result<Value, String> {
    let mut doc = official.clone();
    let responses = object(overlay, "responses")?;
    let paths = doc
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .ok_or("the document has no paths")?;
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for (_, operation) in item
            .iter_mut()
            .filter(|(method, _)| METHODS.contains(&method.as_str()))
        {
            let declared = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
                .ok_or("an operation has no responses")?;
            for (status, response) in responses {
                declared
                    .entry(status.clone())
                    .or_insert_with(|| response.clone());
            }
        }
    }
    let components = doc
        .as_object_mut()
        .ok_or("the document is not an object")?
        .entry("components")
        .or_insert_with(|| Value::Object(Map::new()));
    for (section, entries) in object(overlay, "components")? {
        let target = components
            .as_object_mut()
            .ok_or("components is not an object")?
            .entry(section.clone())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| format!("components.{section} is not an object"))?;
        for (name, value) in entries.as_object().into_iter().flatten() {
            if target.contains_key(name) {
                return Err(format!("components.{section}.{name} is already declared"));
            }
            target.insert(name.clone(), value.clone());
        }
    }
    Ok(doc)
}

fn object<'v>(value: &'v Value, key: &str) -> Result<&'v Map<String, Value>, String> {
    value
        .get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("the overlay has no {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every JSON pointer in `served` that `official` lacks; panics where an official
    /// value was changed or removed.
    fn additions(official: &Value, served: &Value, at: &str, found: &mut Vec<String>) {
        match (official, served) {
            (Value::Object(o), Value::Object(s)) => {
                for key in o.keys() {
                    assert!(s.contains_key(key), "{at}/{key} was removed");
                }
                for (key, value) in s {
                    let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                    match o.get(key) {
                        Some(original) => additions(original, value, &here, found),
                        None => found.push(here),
                    }
                }
            }
            (o, s) => assert_eq!(o, s, "{at} was changed"),
        }
    }

    fn document(file: &str) -> &'static ApiDocument {
        let index = RELEASED.iter().position(|r| r.file == file).unwrap();
        &documents().unwrap()[index]
    }

    #[test]
    fn every_document_is_its_release_plus_exactly_the_overlay() {
        let overlay: Value = serde_norway::from_str(OVERLAY).unwrap();
        // The overlay stays small: three statuses and the six components they use.
        let statuses: Vec<&String> = overlay["responses"].as_object().unwrap().keys().collect();
        assert_eq!(statuses, ["429", "500", "503"]);
        let components: usize = overlay["components"]
            .as_object()
            .unwrap()
            .values()
            .map(|section| section.as_object().unwrap().len())
            .sum();
        assert_eq!(components, 6);
        for doc in documents().unwrap() {
            let mut found = Vec::new();
            additions(&doc.official, &doc.served, "", &mut found);
            for pointer in &found {
                let parts: Vec<&str> = pointer.split('/').collect();
                let allowed = match parts.as_slice() {
                    ["", "components", _, name] => name.starts_with("Numguard"),
                    ["", "paths", _, method, "responses", status] => {
                        METHODS.contains(method) && statuses.iter().any(|s| s == status)
                    }
                    _ => false,
                };
                assert!(
                    allowed,
                    "{}: {pointer} is not in the overlay",
                    doc.base_path
                );
            }
            // The YAML served is the document itself.
            let reread: Value = serde_norway::from_str(&doc.yaml).unwrap();
            assert_eq!(reread, doc.served);
        }
    }

    #[test]
    fn a_status_the_release_declares_is_kept_as_released() {
        let doc = document("sim-swap-subscriptions.yaml");
        let mut found = Vec::new();
        additions(&doc.official, &doc.served, "", &mut found);
        found.retain(|p| p.starts_with("/paths"));
        found.sort();
        assert_eq!(
            found,
            [
                "/paths/~1subscriptions/get/responses/429",
                "/paths/~1subscriptions/get/responses/500",
                "/paths/~1subscriptions/get/responses/503",
                // The release declares its own 429 for creation.
                "/paths/~1subscriptions/post/responses/500",
                "/paths/~1subscriptions/post/responses/503",
                "/paths/~1subscriptions~1{subscriptionId}/delete/responses/429",
                "/paths/~1subscriptions~1{subscriptionId}/delete/responses/500",
                "/paths/~1subscriptions~1{subscriptionId}/delete/responses/503",
                "/paths/~1subscriptions~1{subscriptionId}/get/responses/429",
                "/paths/~1subscriptions~1{subscriptionId}/get/responses/500",
                "/paths/~1subscriptions~1{subscriptionId}/get/responses/503",
            ]
        );
        assert_eq!(
            doc.served["paths"]["/subscriptions"]["post"]["responses"]["429"],
            doc.official["paths"]["/subscriptions"]["post"]["responses"]["429"]
        );
    }

    #[test]
    fn documents_are_served_under_their_released_base_paths() {
        let paths: Vec<String> = documents().unwrap().iter().map(|d| d.path()).collect();
        assert_eq!(
            paths,
            [
                "/sim-swap/v2/openapi.yaml",
                "/device-swap/v1/openapi.yaml",
                "/number-recycling/v0.2/openapi.yaml",
                "/kyc-tenure/v0.2/openapi.yaml",
                "/sim-swap-subscriptions/v0.3/openapi.yaml",
            ]
        );
        assert_eq!(document("sim-swap.yaml").served["info"]["version"], "2.1.0");
    }

    #[test]
    fn the_overlay_never_replaces_an_official_component() {
        let official = json_doc();
        let overlay: Value = serde_json::json!({
            "responses": {},
            "components": {"schemas": {"ErrorInfo": {"type": "object"}}},
        });
        let refused = with_overlay(&official, &overlay).unwrap_err();
        assert!(
            refused.contains("components.schemas.ErrorInfo"),
            "{refused}"
        );
    }

    fn json_doc() -> Value {
        serde_json::json!({
            "servers": [{"url": "{apiRoot}/x/v1"}],
            "paths": {"/a": {"post": {"responses": {"200": {}}}}},
            "components": {"schemas": {"ErrorInfo": {}}},
        })
    }
}
