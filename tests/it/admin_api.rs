//! The admin HTTP API against a running `caracal serve --role admin`: bearer auth, JSON in and
//! out, errors as 4xx JSON with nothing written, one outbox event per change.

use crate::harness::{request, Env, Server};

const TOKEN: &str = "test-admin-token-0123456789";

fn server() -> (Env, Server) {
    let env = Env::new().with("CARACAL_ADMIN__TOKEN", TOKEN);
    let server = env.serve(&["--role", "admin"]);
    (env, server)
}

fn call(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> crate::harness::HttpResponse {
    let auth = format!("Bearer {TOKEN}");
    request(
        method,
        &server.admin_url(path),
        &[("Authorization", &auth), ("X-Caracal-Reason", "test")],
        body,
    )
}

#[test]
fn requests_without_the_admin_token_are_refused_with_json() {
    let (_env, server) = server();
    let missing = request("GET", &server.admin_url("/v1/agents"), &[], None);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["error"]["code"], "unauthenticated");
    let wrong = request(
        "GET",
        &server.admin_url("/v1/agents"),
        &[("Authorization", "Bearer nope")],
        None,
    );
    assert_eq!(wrong.status, 401);
    let created = request(
        "POST",
        &server.admin_url("/v1/agents"),
        &[],
        Some(r#"{"name":"x"}"#),
    );
    assert_eq!(created.status, 401);
    assert_eq!(
        call(&server, "GET", "/v1/agents", None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        request("GET", &server.admin_url("/health"), &[], None).status,
        200
    );
}

#[test]
fn agents_and_policies_round_trip_through_the_api() {
    let (_env, server) = server();
    let parent = call(
        &server,
        "POST",
        "/v1/agents",
        Some(r#"{"name":"team","type":"team","metadata":{"env":"prod"}}"#),
    );
    assert_eq!(parent.status, 201, "{}", parent.body);
    let parent_id = parent.json()["id"].as_str().unwrap().to_owned();
    let child_body = format!(r#"{{"name":"bot","parent_id":"{parent_id}"}}"#);
    let child = call(&server, "POST", "/v1/agents", Some(&child_body)).json();
    assert_eq!(child["parent_id"].as_str(), Some(parent_id.as_str()));

    let policy_body =
        format!(r#"{{"agent_id":"{parent_id}","limit":"0.20","time_window":"daily"}}"#);
    let policy = call(&server, "POST", "/v1/policies", Some(&policy_body));
    assert_eq!(policy.status, 201, "{}", policy.body);
    let policy = policy.json();
    assert_eq!(policy["limit"], "0.20");
    assert_eq!(policy["limit_micros"], 200_000);
    let id = policy["id"].as_str().unwrap();
    let fetched = call(&server, "GET", &format!("/v1/policies/{id}"), None).json();
    assert_eq!(fetched, policy);

    let updated = call(
        &server,
        "PATCH",
        &format!("/v1/policies/{id}"),
        Some(r#"{"limit":"0.35"}"#),
    )
    .json();
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["limit_micros"], 350_000);
    let history = call(&server, "GET", &format!("/v1/policies/{id}/history"), None).json();
    assert_eq!(history.as_array().unwrap().len(), 2);

    let events = call(&server, "GET", "/v1/outbox", None).json();
    assert_eq!(events.as_array().unwrap().len(), 4, "{events:#}");
}

#[test]
fn bad_requests_get_4xx_json_and_write_nothing() {
    let (_env, server) = server();
    let agent = call(&server, "POST", "/v1/agents", Some(r#"{"name":"a"}"#)).json();
    let agent_id = agent["id"].as_str().unwrap();
    let before = call(&server, "GET", "/v1/outbox", None)
        .json()
        .as_array()
        .unwrap()
        .len();
    let cases = [
        format!(r#"{{"agent_id":"{agent_id}","limit":"abc","time_window":"daily"}}"#),
        format!(r#"{{"agent_id":"{agent_id}","limit":"1.00","currency":"XYZ","time_window":"daily"}}"#),
        format!(r#"{{"agent_id":"{agent_id}","limit":"-5","time_window":"daily"}}"#),
        format!(r#"{{"agent_id":"{agent_id}","limit":"1.00","time_window":"yearly"}}"#),
        r#"{"agent_id":"018f0000-0000-7000-8000-000000000000","limit":"1.00","time_window":"daily"}"#.to_owned(),
        format!(r#"{{"agent_id":"{agent_id}","limit":"1.00","time_window":"daily","colour":"red"}}"#),
        "{not json".to_owned(),
    ];
    for body in &cases {
        let response = call(&server, "POST", "/v1/policies", Some(body));
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        let error = response.json();
        assert_eq!(error["error"]["code"], "invalid_request", "{body}");
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    let missing = call(
        &server,
        "GET",
        "/v1/policies/018f0000-0000-7000-8000-000000000000",
        None,
    );
    assert_eq!(missing.status, 404);
    assert_eq!(
        call(&server, "GET", "/v1/policies", None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let after = call(&server, "GET", "/v1/outbox", None)
        .json()
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before);
}

#[test]
fn the_openapi_document_describes_every_route() {
    let (_env, server) = server();
    let doc = request("GET", &server.admin_url("/openapi.json"), &[], None).json();
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/v1/agents",
        "/v1/agents/{id}",
        "/v1/keys",
        "/v1/policies",
        "/v1/policies/{id}/history",
        "/v1/prices",
        "/v1/prices/import",
        "/v1/outbox",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from openapi.json"
        );
    }
}
