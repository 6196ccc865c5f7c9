//! `GET /openapi.json`: the OpenAPI 3.0 document of what this facade serves, written by
//! hand beside the routes (a test checks that the two list the same operations).

use axum::http::header;
use axum::response::IntoResponse;

pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_json_whose_refs_resolve() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"));
        let text = DOCUMENT;
        let mut rest = text;
        let marker = "\"$ref\": \"#";
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            let end = rest.find('"').unwrap();
            let pointer = &rest[..end];
            assert!(
                doc.pointer(pointer).is_some(),
                "unresolved $ref #/{pointer}"
            );
            rest = &rest[end..];
        }
    }
}
