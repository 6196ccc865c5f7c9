//! The CAMARA documents numguard serves, as the tests' oracle: every REST answer and every
//! CloudEvent a sink receives is checked against the schema its document gives, with a
//! JSON Schema validator. The documents are the released ones from `data/camara/` plus
//! numguard's small overlay (429, 500, 503), which `numguard::rest::openapi`'s own tests
//! hold to exactly that.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::{Draft, Validator};
use serde_json::{Value, json};

/// What an operation may answer: a schema per declared status (`None`: no body).
struct Operation {
    base_path: String,
    template: Vec<String>,
    method: String,
    statuses: HashMap<u16, Option<Validator>>,
}

struct Oracle {
    operations: Vec<Operation>,
    /// CloudEvent schemas by event type.
    events: HashMap<String, Validator>,
    /// What a path no document declares answers: a CAMARA error.
    error: Validator,
}

fn oracle() -> &'static Oracle {
    static ORACLE: OnceLock<Oracle> = OnceLock::new();
    ORACLE.get_or_init(build)
}

fn build() -> Oracle {
    let documents = numguard::rest::openapi::documents().expect("the served documents");
    let mut operations = Vec::new();
    let mut events = HashMap::new();
    for doc in documents {
        let schema_doc = json_schema(&doc.served);
        for (path, item) in doc.served["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let Some(responses) = operation.get("responses").and_then(Value::as_object) else {
                    continue;
                };
                let statuses = responses
                    .iter()
                    .map(|(status, response)| {
                        let status: u16 = status.parse().expect("a numeric status");
                        (
                            status,
                            body_validator(&schema_doc, path, method, status, response),
                        )
                    })
                    .collect();
                operations.push(Operation {
                    base_path: doc.base_path.clone(),
                    template: segments(path),
                    method: method.to_uppercase(),
                    statuses,
                });
            }
        }
        if let Some(mapping) = doc
            .served
            .pointer("/components/schemas/CloudEvent/discriminator/mapping")
            .and_then(Value::as_object)
        {
            for (event_type, reference) in mapping {
                let reference = reference.as_str().expect("a $ref");
                events.insert(event_type.clone(), validator(&schema_doc, reference));
            }
        }
    }
    let error = validator(
        &json_schema(&documents[0].served),
        "#/components/schemas/NumguardErrorInfo",
    );
    Oracle {
        operations,
        events,
        error,
    }
}

/// The validator of a response's JSON body, following a `$ref` to a shared response.
fn body_validator(
    doc: &Value,
    path: &str,
    method: &str,
    status: u16,
    response: &Value,
) -> Option<Validator> {
    let escaped = path.replace('~', "~0").replace('/', "~1");
    let pointer = match response.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference.trim_start_matches('#').to_string(),
        None => format!("/paths/{escaped}/{method}/responses/{status}"),
    };
    let response = doc.pointer(&pointer).expect("the response");
    response.pointer("/content/application~1json/schema")?;
    Some(validator(
        doc,
        &format!("#{pointer}/content/application~1json/schema"),
    ))
}

/// A validator of the schema at `reference` inside `doc`, whose other `$ref`s resolve in
/// `doc`. OpenAPI 3.0's schemas are JSON Schema draft 4 with extensions.
fn validator(doc: &Value, reference: &str) -> Validator {
    let mut root = doc.clone();
    // A URI fragment: braces in a path template are percent-encoded.
    root["$ref"] = json!(reference.replace('{', "%7B").replace('}', "%7D"));
    jsonschema::options()
        .with_draft(Draft::Draft4)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {reference}: {e}"))
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema: the type also admits `null`.
fn json_schema(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), json_schema(v)))
                .collect();
            if out.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = out.get("type").cloned()
            {
                out.insert("type".into(), json!([t, "null"]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Operation {
    fn matches(&self, method: &str, path: &str) -> bool {
        let Some(rest) = path.strip_prefix(&self.base_path) else {
            return false;
        };
        let parts = segments(rest);
        self.method == method
            && parts.len() == self.template.len()
            && self
                .template
                .iter()
                .zip(&parts)
                .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
    }
}

fn failures(validator: &Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The one deviation tolerated: with `--allow-loopback-sinks` (tests' receivers are plain
/// HTTP on loopback) a subscription echoes its `http://` loopback sink, which the released
/// `^https://` pattern refuses; such a sink is checked as if it were `https://`.
fn loopback_sinks_as_https(body: &Value) -> Value {
    let mut body = body.clone();
    let subscriptions: Vec<&mut Value> = match &mut body {
        Value::Array(items) => items.iter_mut().collect(),
        one => vec![one],
    };
    for subscription in subscriptions {
        if let Some(Value::String(sink)) = subscription.get_mut("sink")
            && let Some(rest) = sink.strip_prefix("http://")
            && ["127.0.0.1", "[::1]", "localhost"]
                .iter()
                .any(|host| rest.starts_with(host))
        {
            *sink = format!("https://{rest}");
        }
    }
    body
}

/// Panics unless `body` (`Value::Null` for none) is what the served document declares for
/// this status of this operation. A path no document declares must answer a CAMARA error.
#[track_caller]
pub fn assert_camara_answer(method: &str, path: &str, status: u16, body: &Value) {
    let body = &loopback_sinks_as_https(body);
    let oracle = oracle();
    let path = path.split('?').next().unwrap_or(path);
    let Some(operation) = oracle.operations.iter().find(|o| o.matches(method, path)) else {
        let errors = failures(&oracle.error, body);
        assert!(
            errors.is_empty(),
            "{method} {path} → {status}: not a CAMARA error: {errors:?}\n{body}"
        );
        return;
    };
    let declared = operation.statuses.get(&status).unwrap_or_else(|| {
        panic!("{method} {path} answered {status}, which its document does not declare: {body}")
    });
    match declared {
        Some(validator) => {
            let errors = failures(validator, body);
            assert!(
                errors.is_empty(),
                "{method} {path} → {status} breaks the schema: {errors:?}\n{body}"
            );
        }
        None => assert_eq!(
            body,
            &Value::Null,
            "{method} {path} → {status} declares no body"
        ),
    }
}

/// Panics unless `event` is a CloudEvent its type's schema accepts.
#[track_caller]
pub fn assert_camara_event(event: &Value) {
    let event_type = event["type"].as_str().unwrap_or_default();
    let validator = oracle()
        .events
        .get(event_type)
        .unwrap_or_else(|| panic!("no CloudEvent schema for type {event_type:?}: {event}"));
    let errors = failures(validator, event);
    assert!(
        errors.is_empty(),
        "CloudEvent breaks the schema: {errors:?}\n{event}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracle_refuses_what_the_documents_refuse() {
        let ok = json!({"swapped": true});
        assert_camara_answer("POST", "/sim-swap/v2/check", 200, &ok);
        let wrong = [
            (200, json!({"swapped": "yes"})),
            (200, json!({})),
            // A code the 404 list of SIM Swap does not hold.
            (404, json!({"status": 404, "code": "GONE", "message": "x"})),
            // Not declared at all.
            (
                409,
                json!({"status": 409, "code": "ABORTED", "message": "x"}),
            ),
        ];
        for (status, body) in wrong {
            let refused = std::panic::catch_unwind(|| {
                assert_camara_answer("POST", "/sim-swap/v2/check", status, &body)
            });
            assert!(refused.is_err(), "{status} {body} was accepted");
        }
        // Nullable, as OpenAPI 3.0 writes it.
        assert_camara_answer(
            "POST",
            "/sim-swap/v2/retrieve-date",
            200,
            &json!({"latestSimChange": null, "monitoredPeriod": 120}),
        );
        assert_camara_answer(
            "GET",
            "/sim-swap-subscriptions/v0.3/subscriptions/abc",
            404,
            &json!({"status": 404, "code": "NOT_FOUND", "message": "no subscription"}),
        );
        assert_camara_answer(
            "DELETE",
            "/sim-swap-subscriptions/v0.3/subscriptions/abc",
            204,
            &Value::Null,
        );
        let event = json!({
            "id": "1", "source": "https://numguard.example/", "specversion": "1.0",
            "type": "org.camaraproject.sim-swap-subscriptions.v0.subscription-ended",
            "time": "2026-12-06T10:00:00.000Z", "datacontenttype": "application/json",
            "data": {"subscriptionId": "s", "terminationReason": "SUBSCRIPTION_DELETED"},
        });
        assert_camara_event(&event);
        let mut bad = event.clone();
        bad["data"]["terminationReason"] = json!("BORED");
        assert!(std::panic::catch_unwind(|| assert_camara_event(&bad)).is_err());
    }
}
